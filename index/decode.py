"""Decode archive files into 8-bit RGB Pillow images plus file metadata.

JPEG, PNG, WebP and BMP go through Pillow, with EXIF orientation applied.
TIFF and GeoTIFF go through tifffile, which also reads the GeoTIFF tags:

* Band choice: one band is shown as grey, two bands use the first as grey,
  three or more use ``DecodeConfig.rgb_bands`` (0-based, default the first
  three bands, which is RGB order for ordinary RGB and RGBA/RGBN files).
* Stretch: 8-bit data is kept as is. Any other type (16-bit, 32-bit, float)
  is stretched per band so that the ``stretch_percentiles`` low and high
  percentiles map to 0 and 255, with values outside clipped.

A file is read into memory once, so its SHA-256 and its pixels always come
from the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from index.errors import IndexConfigError, IndexPackageError
from index.geo import geo_from_tiff_page

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")  # the JPEG plugin also opens MPO


class DecodeError(IndexPackageError):
    """A file cannot be decoded as an image; the message is the skip reason."""


@dataclass(frozen=True)
class DecodeConfig:
    """Limits and the band/stretch policy used when decoding archive files."""

    max_pixels: int = 89_478_485  # width * height; Pillow's own default bomb limit
    max_file_bytes: int = 1 << 30
    rgb_bands: tuple[int, int, int] = (0, 1, 2)
    stretch_percentiles: tuple[float, float] = (2.0, 98.0)

    def __post_init__(self) -> None:
        if self.max_pixels <= 0:
            raise IndexConfigError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.max_file_bytes <= 0:
            raise IndexConfigError(f"max_file_bytes must be positive, got {self.max_file_bytes}")
        if len(self.rgb_bands) != 3 or min(self.rgb_bands) < 0:
            raise IndexConfigError(f"rgb_bands must be three band indices >= 0, got {self.rgb_bands}")
        low, high = self.stretch_percentiles
        if not 0.0 <= low < high <= 100.0:
            raise IndexConfigError(f"stretch_percentiles must satisfy 0 <= low < high <= 100, got {self.stretch_percentiles}")


@dataclass
class DecodedImage:
    image: Image.Image  # 8-bit RGB
    sha256: str
    width: int
    height: int
    geo: Optional[dict[str, Any]]


def read_image_file(path: Path, config: DecodeConfig) -> DecodedImage:
    """Read, hash and decode one file; raise DecodeError with the skip reason."""
    data = _read_bytes(Path(path), config)
    digest = hashlib.sha256(data).hexdigest()
    if Path(path).suffix.lower() in TIFF_SUFFIXES:
        image, geo = _decode_tiff(data, config)
    else:
        image, geo = _decode_with_pillow(data, config), None
    return DecodedImage(image=image, sha256=digest, width=image.width, height=image.height, geo=geo)


def hash_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _read_bytes(path: Path, config: DecodeConfig) -> bytes:
    try:
        size = path.stat().st_size
        if size > config.max_file_bytes:
            raise DecodeError(f"file too large: {size} bytes > max_file_bytes {config.max_file_bytes}")
        data = path.read_bytes()
    except OSError as error:
        raise DecodeError(f"cannot be read: {error.strerror or error}") from error
    if not data:
        raise DecodeError("empty file (0 bytes)")
    return data


def _check_pixels(width: int, height: int, config: DecodeConfig) -> None:
    if width * height > config.max_pixels:
        raise DecodeError(
            f"decompression bomb: {width}x{height} = {width * height} pixels > max_pixels {config.max_pixels}")


def _decode_with_pillow(data: bytes, config: DecodeConfig) -> Image.Image:
    from model.data.transforms import to_rgb

    try:
        with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS) as image:
            _check_pixels(image.width, image.height, config)
            image.load()
            oriented = ImageOps.exif_transpose(image)
            return to_rgb(oriented).copy()
    except Image.DecompressionBombError as error:
        raise DecodeError(f"decompression bomb: {error}") from error
    except UnidentifiedImageError as error:
        raise DecodeError("not a decodable image (unknown or unsupported format)") from error
    except (OSError, SyntaxError, ValueError) as error:
        # Pillow raises OSError for truncated data and SyntaxError for bad headers.
        raise DecodeError(f"corrupt or truncated image: {error}") from error


def _decode_tiff(data: bytes, config: DecodeConfig) -> tuple[Image.Image, Optional[dict[str, Any]]]:
    geo = None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages.first
            _check_pixels(int(page.imagewidth), int(page.imagelength), config)
            geo = geo_from_tiff_page(page)
            # NOTE: the TIFF Orientation tag is not applied on this path; only
            # Pillow-decoded files get EXIF orientation.
            pixels = _to_height_width_bands(page.asarray(), page.axes)
    except DecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - tifffile raises many types; Pillow gets a second try
        # Compressions that need the optional imagecodecs package (LZW, JPEG
        # in TIFF) land here; Pillow decodes the pixels and the tags read above are kept.
        logger.debug("tifffile could not decode a TIFF (%s); trying Pillow", error)
        return _decode_with_pillow(data, config), geo
    return _bands_to_rgb(pixels, config), geo


def _to_height_width_bands(array: np.ndarray, axes: str) -> np.ndarray:
    """Return ``[height, width, bands]`` from tifffile's array and axes string."""
    for axis in axes:
        if axis not in "YXS" and array.shape[axes.index(axis)] == 1:
            array = array.take(0, axis=axes.index(axis))
            axes = axes.replace(axis, "")
    if set(axes) not in ({"Y", "X"}, {"Y", "X", "S"}):
        raise DecodeError(f"unsupported TIFF layout with axes {axes!r} and shape {array.shape}")
    if "S" not in axes:
        array, axes = array[..., np.newaxis], axes + "S"
    return np.transpose(array, [axes.index("Y"), axes.index("X"), axes.index("S")])


def _bands_to_rgb(pixels: np.ndarray, config: DecodeConfig) -> Image.Image:
    bands = pixels.shape[2]
    if bands >= 3:
        if max(config.rgb_bands) >= bands:
            raise DecodeError(f"rgb_bands {config.rgb_bands} out of range for an image with {bands} bands")
        chosen = pixels[:, :, list(config.rgb_bands)]  # [height, width, 3]
    else:
        chosen = np.repeat(pixels[:, :, :1], 3, axis=2)  # [height, width, 3]
    if chosen.dtype != np.uint8:
        chosen = _stretch(chosen, config.stretch_percentiles)
    return Image.fromarray(np.ascontiguousarray(chosen), mode="RGB")


def _stretch(pixels: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    out = np.zeros(pixels.shape, dtype=np.uint8)
    for band in range(pixels.shape[2]):
        values = pixels[:, :, band].astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            continue
        low, high = np.percentile(finite, percentiles)
        if high <= low:
            continue
        scaled = (np.nan_to_num(values, nan=low) - low) / (high - low) * 255.0
        out[:, :, band] = np.clip(scaled, 0, 255).astype(np.uint8)
    return out
