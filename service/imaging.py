"""Decoding of uploaded images and rendering of thumbnails.

Uploads are hostile input: the pixel count is checked from the header before
any pixel is decoded, and every decoder failure becomes a client error.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Optional

from PIL import Image, ImageOps, UnidentifiedImageError

from model.data.transforms import to_rgb
from service.core.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType

logger = logging.getLogger(__name__)

ACCEPTED_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def decode_upload(data: bytes, *, max_pixels: int, decode_options: Optional[dict] = None) -> Image.Image:
    """Decode uploaded bytes into an 8-bit RGB Pillow image.

    Raises ``InvalidImage`` (400) for empty, truncated or corrupt data,
    ``UnsupportedMediaType`` (415) for data that is no accepted image format and
    ``PayloadTooLarge`` (413) when width x height exceeds ``max_pixels``.
    TIFFs, multi-band and 16-bit ones included, are decoded by the index
    package's archive decoder with the snapshot's ``decode_options`` (band
    choice and stretch), so that a query is preprocessed like the archive.
    """
    if not data:
        raise InvalidImage("the uploaded file is empty (0 bytes)", code="empty_file")
    if data[:4] in _TIFF_MAGIC:
        decoded = _decode_tiff(data, max_pixels, decode_options or {})
        if decoded is not None:
            return decoded
    try:
        image = _open_checked(data, max_pixels)
    except UnidentifiedImageError:
        if _has_image_signature(data):
            raise InvalidImage("the uploaded image is truncated or corrupt: its header cannot be parsed",
                               code="corrupt_image") from None
        raise UnsupportedMediaType(
            f"the uploaded file is not a supported image; accepted formats: {', '.join(ACCEPTED_FORMATS)}",
            code="unsupported_image_format") from None
    try:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))
    except Exception as error:  # any decoder failure on client bytes is a client error
        raise InvalidImage(f"the uploaded {image.format} image is truncated or corrupt: {error}",
                           code="corrupt_image") from None


def _has_image_signature(data: bytes) -> bool:
    """Return True when ``data`` starts like one of the accepted formats."""
    return (data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n" or data[:4] in _TIFF_MAGIC
            or data[:6] in (b"GIF87a", b"GIF89a") or data[:2] == b"BM"
            or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"))


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        # The explicit pixel check below replaces Pillow's bomb warning.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except Image.DecompressionBombError as error:
            raise PayloadTooLarge(f"image has too many pixels ({error}); the limit is {max_pixels} pixels",
                                  code="too_many_pixels") from None
        except UnidentifiedImageError:
            raise
        except Exception as error:  # header parsers raise assorted errors on corrupt input
            raise InvalidImage(f"the uploaded image header is corrupt: {error}", code="corrupt_image") from None
    _check_pixels(image.width, image.height, max_pixels)
    return image


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image size {width}x{height} is invalid", code="corrupt_image")
    if width * height > max_pixels:
        raise PayloadTooLarge(f"image of {width}x{height} = {width * height} pixels exceeds the limit of "
                              f"{max_pixels} pixels", code="too_many_pixels")


def _decode_tiff(data: bytes, max_pixels: int, decode_options: dict) -> Optional[Image.Image]:
    """Decode a TIFF like the archive decoder does; return None when tifffile cannot read its header."""
    import tifffile

    from index.decode import DecodeConfig, DecodeError, read_image_file

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages.first
            width, height = int(page.imagewidth), int(page.imagelength)
    except Exception:  # tifffile raises assorted errors on corrupt headers; Pillow gets a second try
        return None
    _check_pixels(width, height, max_pixels)
    options = {key: tuple(value) if isinstance(value, list) else value for key, value in decode_options.items()
               if key in ("rgb_bands", "stretch_percentiles")}
    config = DecodeConfig(max_pixels=max_pixels, max_file_bytes=max(len(data), 1), **options)
    # read_image_file takes a path, so the upload goes through a private temporary file.
    with tempfile.NamedTemporaryFile(suffix=".tif") as handle:
        handle.write(data)
        handle.flush()
        try:
            return read_image_file(Path(handle.name), config).image
        except DecodeError as error:
            raise InvalidImage(f"the uploaded TIFF cannot be decoded: {error}", code="corrupt_image") from None


def render_thumbnail(path: Path, size_px: int) -> bytes:
    """Return a JPEG of the archive image at ``path`` with its longest side at most ``size_px``."""
    with Image.open(path) as image:
        image.draft("RGB", (size_px, size_px))
        rgb = to_rgb(image)
        rgb.thumbnail((size_px, size_px), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
