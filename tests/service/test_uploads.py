"""Hostile and unusual image uploads: each gets a clear 4xx or a normal answer, never a 500."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.service.conftest import UCM_DIR
from tests.service.test_api import assert_envelope

JPEG_BYTES = (UCM_DIR / "images" / "beach" / "beach10.jpg").read_bytes()


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` 1-bit pixels of zeros."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * ((width // 8 + 2) * 64), 9)  # data for the first rows only
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def tiff_bytes(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def post_file(client, data: bytes, name: str = "upload.bin", content_type: str = "application/octet-stream"):
    return client.post("/v1/search/image", files={"file": (name, data, content_type)}, data={"k": "2"})


rng = np.random.default_rng(0)
ACCEPTED = {
    "cmyk_jpeg": encode(Image.open(io.BytesIO(JPEG_BYTES)).convert("CMYK"), "JPEG"),
    "grey_16bit_png": encode(Image.fromarray(rng.integers(0, 65535, (64, 64), dtype=np.uint16)), "PNG"),
    "rgb_16bit_tiff": tiff_bytes(rng.integers(0, 4096, (64, 64, 3), dtype=np.uint16), photometric="rgb"),
    "multiband_tiff_6_bands": tiff_bytes(rng.integers(0, 255, (6, 48, 48), dtype=np.uint8),
                                         photometric="minisblack", planarconfig="separate"),
    "float_tiff_4_bands": tiff_bytes(rng.random((40, 40, 4), dtype=np.float32), photometric="minisblack",
                                     planarconfig="contig"),
    "rgba_png": encode(Image.new("RGBA", (32, 32), (10, 200, 30, 128)), "PNG"),
    "palette_gif": encode(Image.new("P", (32, 32), 3), "GIF"),
    "webp": encode(Image.open(io.BytesIO(JPEG_BYTES)), "WEBP"),
    "bmp": encode(Image.new("L", (20, 30), 100), "BMP"),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_unusual_images_are_searched(client, name):
    response = post_file(client, ACCEPTED[name], name=name)
    assert response.status_code == 200, response.text
    assert len(response.json()["scenes"]) == 2


# (case, bytes, expected status, expected error code)
REJECTED = [
    ("zero_byte", b"", 400, "empty_file"),
    ("truncated_jpeg", JPEG_BYTES[: len(JPEG_BYTES) // 3], 400, "corrupt_image"),
    ("jpeg_header_only", JPEG_BYTES[:20], 400, None),
    ("truncated_png", encode(Image.new("RGB", (300, 300), (1, 2, 3)), "PNG")[:200], 400, "corrupt_image"),
    ("truncated_tiff", tiff_bytes(rng.integers(0, 255, (5, 64, 64), dtype=np.uint8))[:300], 400, None),
    ("text_file", b"hello, this is not an image\n" * 10, 415, "unsupported_image_format"),
    ("pdf_header", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + b"0" * 100, 415, "unsupported_image_format"),
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 415, "unsupported_image_format"),
    ("png_bomb_over_limit", png_bomb(30_000, 30_000), 413, "too_many_pixels"),
    ("png_bomb_over_pillow_limit", png_bomb(100_000, 100_000), 413, "too_many_pixels"),
]


@pytest.mark.parametrize("case,data,status,code", REJECTED, ids=[row[0] for row in REJECTED])
def test_hostile_uploads_get_client_errors(client, case, data, status, code):
    error = assert_envelope(post_file(client, data, name=case), status, code)
    if status == 413:
        assert "4000000 pixels" in error["message"]


def test_tiff_bomb_is_rejected_before_decoding(client):
    # A 5-band TIFF whose header declares 3000 x 3000 pixels, over the 4 Mpx test limit.
    data = tiff_bytes(np.zeros((5, 3000, 3000), dtype=np.uint8), photometric="minisblack",
                      planarconfig="separate", compression="zlib")
    assert len(data) < 2 * 1024 * 1024
    error = assert_envelope(post_file(client, data, name="bomb.tif"), 413, "too_many_pixels")
    assert "3000x3000" in error["message"]


def test_upload_over_byte_limit_is_413(client):
    data = b"\xff\xd8" + b"\x00" * (2 * 1024 * 1024 + 10)
    error = assert_envelope(post_file(client, data), 413)
    assert str(2 * 1024 * 1024) in error["message"]


def test_chunked_body_over_limit_is_413(client):
    def chunks():
        for _ in range(40):
            yield b"x" * (128 * 1024)

    response = client.post("/v1/search/text", content=chunks(), headers={"content-type": "application/json"})
    assert_envelope(response, 413, "payload_too_large")


def test_file_field_sent_as_text_is_422(client):
    response = client.post("/v1/search/image", data={"file": "not a file", "k": "2"})
    assert response.status_code == 422, response.text


def test_wrong_content_type_is_client_error(client):
    response = client.post("/v1/search/image", content=b"\x00\x01", headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
