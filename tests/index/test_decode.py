"""Decoding of every supported format, band choice, stretch, orientation and GeoTIFF tags."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from index.decode import DecodeConfig, DecodeError, read_image_file
from index.errors import IndexConfigError
from tests.index.conftest import DATA, write_geotiff

SAMPLE_JPEG = DATA / "ucm_captions" / "images" / "beach" / "beach00.jpg"


def _gradient(height: int, width: int, bands: int, dtype) -> np.ndarray:
    high = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    ramp = np.linspace(0, high, width, dtype=np.float64)
    pixels = np.broadcast_to(ramp, (height, width))
    return np.stack([pixels * (band + 1) / bands for band in range(bands)], axis=-1).astype(dtype)


@pytest.mark.parametrize("image_format,suffix", [("PNG", ".png"), ("WEBP", ".webp"), ("BMP", ".bmp"),
                                                 ("JPEG", ".jpg"), ("TIFF", ".tif")])
def test_pillow_formats_decode_to_rgb(tmp_path, image_format, suffix):
    path = tmp_path / f"scene{suffix}"
    Image.open(SAMPLE_JPEG).resize((64, 48)).save(path, format=image_format)
    decoded = read_image_file(path, DecodeConfig())
    assert decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height) == (64, 48)
    assert len(decoded.sha256) == 64


def test_exif_orientation_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.new("RGB", (40, 20), (200, 10, 10)).save(path, exif=exif.tobytes())
    decoded = read_image_file(path, DecodeConfig())
    assert (decoded.width, decoded.height) == (20, 40)


@pytest.mark.parametrize("bands", [1, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_bands_and_bit_depths(tmp_path, bands, dtype):
    path = tmp_path / "scene.tif"
    pixels = _gradient(16, 32, bands, dtype)
    if bands == 1:
        tifffile.imwrite(path, pixels[..., 0])
    else:
        tifffile.imwrite(path, pixels, photometric="rgb" if bands == 3 else "minisblack", planarconfig="contig")
    decoded = read_image_file(path, DecodeConfig())
    array = np.asarray(decoded.image)
    assert array.shape == (16, 32, 3)
    assert array[:, 0].max() < array[:, -1].min()  # the ramp survives the stretch
    if dtype != np.uint8:
        assert array.max() == 255


def test_tiff_separate_planes(tmp_path):
    path = tmp_path / "planar.tif"
    pixels = np.moveaxis(_gradient(8, 12, 3, np.uint16), -1, 0)  # [bands, height, width]
    tifffile.imwrite(path, pixels, planarconfig="separate", photometric="rgb")
    assert read_image_file(path, DecodeConfig()).image.size == (12, 8)


def test_rgb_band_choice(tmp_path):
    path = tmp_path / "multispectral.tif"
    pixels = np.zeros((4, 4, 5), dtype=np.uint8)
    for band in range(5):
        pixels[..., band] = band * 50
    tifffile.imwrite(path, pixels, photometric="minisblack", planarconfig="contig")
    decoded = read_image_file(path, DecodeConfig(rgb_bands=(4, 2, 0)))
    assert tuple(np.asarray(decoded.image)[0, 0]) == (200, 100, 0)


def test_rgb_band_out_of_range(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((4, 4, 3), np.uint8), photometric="rgb")
    with pytest.raises(DecodeError, match="out of range"):
        read_image_file(path, DecodeConfig(rgb_bands=(0, 1, 5)))


def test_percentile_stretch_clips_outliers(tmp_path):
    path = tmp_path / "outlier.tif"
    pixels = np.full((20, 20), 1000, dtype=np.uint16)
    pixels[:10] = 2000
    pixels[0, 0] = 65535  # one hot pixel must not darken the whole image
    tifffile.imwrite(path, pixels)
    array = np.asarray(read_image_file(path, DecodeConfig()).image)[..., 0]
    assert array[15, 15] == 0
    assert array[5, 5] == 255


def test_geotiff_bounds_and_crs(tmp_path):
    path = tmp_path / "geo.tif"
    write_geotiff(path, _gradient(20, 30, 4, np.uint16), origin=(500000.0, 4600000.0), pixel_size=(10.0, 5.0),
                  epsg=32633, photometric="rgb", extrasamples=[0])
    decoded = read_image_file(path, DecodeConfig())
    assert decoded.geo["crs"] == "EPSG:32633"
    assert decoded.geo["bounds"] == [500000.0, 4600000.0 - 20 * 5.0, 500000.0 + 30 * 10.0, 4600000.0]


def test_plain_tiff_has_no_geo(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8))
    assert read_image_file(path, DecodeConfig()).geo is None


@pytest.mark.parametrize("config_kwargs", [{"max_pixels": 0}, {"rgb_bands": (0, 1)},
                                           {"stretch_percentiles": (98.0, 2.0)}, {"max_file_bytes": -1}])
def test_invalid_decode_config(config_kwargs):
    with pytest.raises(IndexConfigError):
        DecodeConfig(**config_kwargs)


def test_file_size_limit(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(DecodeError, match="too large"):
        read_image_file(path, DecodeConfig(max_file_bytes=10))


def test_hash_matches_bytes(tmp_path):
    import hashlib

    path = tmp_path / "scene.png"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    assert read_image_file(path, DecodeConfig()).sha256 == hashlib.sha256(buffer.getvalue()).hexdigest()


def test_lzw_geotiff_from_pillow(tmp_path):
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    tags = ImageFileDirectory_v2()
    tags[33550], tags.tagtype[33550] = (10.0, 10.0, 0.0), 12  # ModelPixelScaleTag, doubles
    tags[33922], tags.tagtype[33922] = (0.0, 0.0, 0.0, 500000.0, 4600000.0, 0.0), 12  # ModelTiepointTag
    tags[34735], tags.tagtype[34735] = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633), 3
    path = tmp_path / "lzw.tif"
    Image.new("RGB", (30, 20), (10, 20, 30)).save(path, compression="tiff_lzw", tiffinfo=tags)
    decoded = read_image_file(path, DecodeConfig())
    assert decoded.image.getpixel((0, 0)) == (10, 20, 30)
    assert decoded.geo == {"bounds": [500000.0, 4599800.0, 500300.0, 4600000.0], "crs": "EPSG:32633"}
