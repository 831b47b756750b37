"""Hostile archive entries are skipped with a reason and the build still finishes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from index.build import BuildConfig, build_snapshot
from index.scan import scan_archive
from index.snapshot import open_current_snapshot
from tests.index.conftest import DATA

GOOD = DATA / "ucm_captions" / "images" / "beach" / "beach00.jpg"
NON_UTF8_NAME = b"caf\xe9.jpg"

# (archive-relative path as listed, expected words of the skip reason)
EXPECTED_SKIPS = [
    ("empty.jpg", "empty file"),
    ("truncated.jpg", "truncated"),
    ("bomb.png", "decompression bomb"),
    ("notes.txt", "not an image file type"),
    ("fake.png", "not a decodable image"),
    ("loop", "folder already visited"),
    ("self.jpg", "symlink loop"),
    ("caf\ufffd.jpg", "not valid UTF-8"),
]


# Pillow warns about the bomb when opening it; the decoder then rejects it.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


@pytest.fixture(scope="module")
def hostile_archive(tmp_path_factory) -> Path:
    archive = tmp_path_factory.mktemp("hostile")
    shutil.copyfile(GOOD, archive / "good.jpg")
    (archive / "empty.jpg").touch()
    data = GOOD.read_bytes()
    (archive / "truncated.jpg").write_bytes(data[: len(data) // 2])
    # 1-bit 12000 x 12000 = 144 M pixels, above the 89.5 M default limit, yet a tiny PNG.
    Image.new("1", (12000, 12000)).save(archive / "bomb.png")
    (archive / "notes.txt").write_text("not an image", encoding="utf-8")
    (archive / "fake.png").write_text("plain text with an image suffix", encoding="utf-8")
    os.symlink(".", archive / "loop")
    os.symlink("self.jpg", archive / "self.jpg")
    with open(os.path.join(os.fsencode(archive), NON_UTF8_NAME), "wb") as handle:
        handle.write(data)
    return archive


def test_scan_lists_hostile_entries(hostile_archive):
    result = scan_archive(hostile_archive)
    reasons = dict(result.skipped)
    assert [item.relative_path for item in result.files] == ["bomb.png", "fake.png", "good.jpg", "truncated.jpg"]
    assert "not valid UTF-8" in reasons["caf\ufffd.jpg"]
    assert "folder already visited" in reasons["loop"]
    assert "symlink loop" in reasons["self.jpg"]


@pytest.fixture(scope="module")
def hostile_build(hostile_archive, tmp_path_factory, encoder):
    root = tmp_path_factory.mktemp("snapshots")
    report = build_snapshot(BuildConfig(archive_dir=hostile_archive, snapshot_root=root, num_workers=2), encoder)
    return report, root


@pytest.mark.parametrize("relative_path,reason", EXPECTED_SKIPS)
def test_build_skips_hostile_file(hostile_build, relative_path, reason):
    reasons = dict(hostile_build[0].skipped)
    assert relative_path in reasons
    assert reason in reasons[relative_path]


def test_build_keeps_good_image(hostile_build):
    report, root = hostile_build
    assert report.image_count == 1
    assert len(report.skipped) == len(EXPECTED_SKIPS)
    with open_current_snapshot(root) as snapshot:
        assert snapshot.image_ids() == ["good.jpg"]
        assert snapshot.manifest["skipped_count"] == len(EXPECTED_SKIPS)


def test_missing_archive_rejected(tmp_path, encoder):
    from index.errors import ArchiveError

    with pytest.raises(ArchiveError, match="not found"):
        build_snapshot(BuildConfig(archive_dir=tmp_path / "absent", snapshot_root=tmp_path / "s"), encoder)
