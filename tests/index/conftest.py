"""Fixtures for the index tests: a tiny encoder and a small copy of the bundled images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from model.encoder import load_encoder

DATA = Path(__file__).resolve().parents[2] / "data"
UCM_CLASSES = ("agricultural", "beach", "forest", "harbor", "airplane")
UCM_PER_CLASS = 2
RSSCN7_COUNT = 2


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    # The tiny models run fastest on one thread, and intra-op threads slow
    # down by orders of magnitude when other processes load the CPU cores.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def encoder():
    return load_encoder("tiny-vit")


@pytest.fixture(scope="session")
def other_encoder():
    return load_encoder("tiny-conv-bert")


def _copy_subset(source: Path, target: Path, entries: list[dict]) -> None:
    for entry in entries:
        destination = target / entry["image"]
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / entry["image"], destination)
    (target / "annotations.json").write_text(json.dumps(entries), encoding="utf-8")


@pytest.fixture()
def sample_archive(tmp_path: Path) -> Path:
    return make_sample_archive(tmp_path)


def make_sample_archive(folder: Path) -> Path:
    """Copy twelve bundled images in two collections, each with its annotations.json subset."""
    archive = folder / "archive"
    ucm = json.loads((DATA / "ucm_captions" / "annotations.json").read_text(encoding="utf-8"))
    chosen = []
    for name in UCM_CLASSES:
        chosen += [entry for entry in ucm if entry["label"] == name][:UCM_PER_CLASS]
    _copy_subset(DATA / "ucm_captions", archive / "ucm_captions", chosen)
    rsscn7 = json.loads((DATA / "rsscn7" / "annotations.json").read_text(encoding="utf-8"))
    _copy_subset(DATA / "rsscn7", archive / "rsscn7", rsscn7[:RSSCN7_COUNT])
    return archive


def write_geotiff(path: Path, pixels: np.ndarray, *, origin=(500000.0, 4600000.0), pixel_size=(10.0, 10.0),
                  epsg: int = 32633, **kwargs) -> None:
    """Write a north-up GeoTIFF with a tiepoint, a pixel scale and a projected CRS GeoKey."""
    geokeys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg]
    extratags = [
        (33550, "d", 3, (pixel_size[0], pixel_size[1], 0.0), True),  # ModelPixelScaleTag
        (33922, "d", 6, (0.0, 0.0, 0.0, origin[0], origin[1], 0.0), True),  # ModelTiepointTag
        (34735, "H", len(geokeys), geokeys, True),  # GeoKeyDirectoryTag
    ]
    tifffile.imwrite(path, pixels, extratags=extratags, **kwargs)
