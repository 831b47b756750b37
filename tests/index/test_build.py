"""Build lifecycle: resume after a kill, atomic publish, incremental update, cancel, lock."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index.build import BuildConfig, BuildProgress, build_snapshot, update_snapshot
from index.errors import ArchiveError, BuildCancelled, SnapshotMismatch, SnapshotNotFound
from index.ids import image_id_from_path
from index.publish import BuildLocked, build_lock
from index.snapshot import open_current_snapshot
from tests.index.conftest import DATA, write_geotiff

REPO = Path(__file__).resolve().parents[2]
KILL_SCRIPT = """
import os, signal, sys
import torch
from index.build import BuildConfig, build_snapshot
from model.encoder import load_encoder

archive, root, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)

def progress(event):
    if event.stage == "embed_images" and event.done >= kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

config = BuildConfig(archive_dir=archive, snapshot_root=root, batch_size=2, shard_size=2, num_workers=0)
build_snapshot(config, load_encoder("tiny-vit"), progress=progress)
"""


def _config(archive: Path, root: Path, **kwargs) -> BuildConfig:
    return BuildConfig(archive_dir=archive, snapshot_root=root, num_workers=0, batch_size=4, **kwargs)


def _embed_files(encoder, snapshot) -> np.ndarray:
    images = [Image.open(snapshot.get_image(image_id).path) for image_id in snapshot.image_ids()]
    return encoder.encode_images(images)  # [images, dim]


def test_resume_after_kill(sample_archive, tmp_path, encoder):
    root = tmp_path / "snapshots"
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(sample_archive), str(root), "6"],
                            cwd=REPO, capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    with pytest.raises(SnapshotNotFound):
        open_current_snapshot(root)
    assert len(list((root / ".work").glob("*/shard-*.json"))) == 3

    report = build_snapshot(_config(sample_archive, root), encoder)
    assert report.reused == 6
    assert report.embedded == report.image_count - 6
    with open_current_snapshot(root) as snapshot:
        stored = np.stack([snapshot.image_vector(image_id) for image_id in snapshot.image_ids()])
        np.testing.assert_allclose(stored, _embed_files(encoder, snapshot), atol=1e-5)
    assert not any((root / ".work").glob("*/shard-*"))


def test_failure_mid_build_keeps_previous(sample_archive, tmp_path, encoder, monkeypatch):
    root = tmp_path / "snapshots"
    first = build_snapshot(_config(sample_archive, root), encoder)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr("index.writer.write_store", fail)
    with pytest.raises(OSError, match="injected"):
        build_snapshot(_config(sample_archive, root), encoder)
    monkeypatch.undo()

    assert (root / "CURRENT").read_text().strip() == first.version
    assert [path.name for path in (root / "snapshots").iterdir()] == [first.version]
    with open_current_snapshot(root) as snapshot:
        assert snapshot.image_count == first.image_count
    assert any((root / ".staging").iterdir())  # the partial folder stays out of sight

    second = build_snapshot(_config(sample_archive, root), encoder)
    assert not any((root / ".staging").iterdir())
    assert (root / "CURRENT").read_text().strip() == second.version


def test_failure_before_pointer_switch(sample_archive, tmp_path, encoder, monkeypatch):
    root = tmp_path / "snapshots"
    first = build_snapshot(_config(sample_archive, root), encoder)

    def fail(*args, **kwargs):
        raise OSError(5, "I/O error (injected)")

    monkeypatch.setattr("index.publish.write_pointer", fail)
    with pytest.raises(OSError, match="injected"):
        build_snapshot(_config(sample_archive, root), encoder)
    with open_current_snapshot(root) as snapshot:
        assert snapshot.version == first.version


def _change_archive(archive: Path) -> None:
    ucm = archive / "ucm_captions" / "images"
    (ucm / "beach" / "beach01.jpg").unlink()
    shutil.copyfile(DATA / "ucm_captions" / "images" / "forest" / "forest05.jpg", ucm / "forest" / "forest05.jpg")
    shutil.copyfile(DATA / "ucm_captions" / "images" / "harbor" / "harbor07.jpg", ucm / "airplane" / "airplane00.jpg")


def test_update_equals_full_rebuild(sample_archive, tmp_path, encoder):
    root = tmp_path / "snapshots"
    first = build_snapshot(_config(sample_archive, root), encoder)
    _change_archive(sample_archive)

    updated = update_snapshot(_config(sample_archive, root), encoder)
    assert updated.embedded == 2  # the added and the changed image
    assert updated.reused == first.image_count - 2
    full = build_snapshot(_config(sample_archive, tmp_path / "full"), encoder)

    with open_current_snapshot(root) as incremental, open_current_snapshot(tmp_path / "full") as rebuilt:
        assert incremental.image_ids() == rebuilt.image_ids()
        assert image_id_from_path("ucm_captions/images/beach/beach01.jpg") not in incremental.image_ids()
        for image_id in rebuilt.image_ids():
            assert incremental.get_image(image_id) == rebuilt.get_image(image_id)
            np.testing.assert_allclose(incremental.image_vector(image_id), rebuilt.image_vector(image_id), atol=1e-5)
        assert incremental.caption_texts() == rebuilt.caption_texts()
        np.testing.assert_allclose(incremental.caption_vectors(), rebuilt.caption_vectors(), atol=1e-5)
        queries = encoder.encode_texts(["a harbor", "green forest", "beach"])
        assert [[hit[0] for hit in hits] for hits in incremental.search_images(queries, 5)] == \
            [[hit[0] for hit in hits] for hits in rebuilt.search_images(queries, 5)]
    assert full.image_count == updated.image_count


def test_update_with_other_encoder_rejected(sample_archive, tmp_path, encoder, other_encoder):
    root = tmp_path / "snapshots"
    build_snapshot(_config(sample_archive, root), encoder)
    with pytest.raises(SnapshotMismatch):
        update_snapshot(_config(sample_archive, root), other_encoder)


def test_cancel_then_resume(sample_archive, tmp_path, encoder):
    root = tmp_path / "snapshots"
    events: list[BuildProgress] = []
    with pytest.raises(BuildCancelled):
        build_snapshot(_config(sample_archive, root), encoder, progress=events.append, should_stop=lambda: True)
    assert not (root / "CURRENT").exists()
    assert events[0].stage == "scan"
    report = build_snapshot(_config(sample_archive, root), encoder)
    assert report.reused == 4  # one batch was embedded before the stop
    assert report.embedded == report.image_count - 4


def test_second_build_locked_out(sample_archive, tmp_path, encoder):
    root = tmp_path / "snapshots"
    with build_lock(root), pytest.raises(BuildLocked):
        build_snapshot(_config(sample_archive, root), encoder)


def test_geotiff_metadata_kept(tmp_path, encoder):
    archive = tmp_path / "geo"
    archive.mkdir()
    pixels = (np.random.default_rng(0).random((24, 40, 3)) * 4000).astype(np.uint16)
    write_geotiff(archive / "scene.tif", pixels, origin=(300000.0, 5000000.0), pixel_size=(0.5, 0.5),
                  epsg=32610, photometric="rgb")
    root = tmp_path / "snapshots"
    build_snapshot(_config(archive, root), encoder)
    with open_current_snapshot(root) as snapshot:
        record = snapshot.get_image("scene.tif")
        assert record.geo == {"bounds": [300000.0, 5000000.0 - 12.0, 300020.0, 5000000.0], "crs": "EPSG:32610"}
        assert (record.width, record.height) == (40, 24)


def test_jsonl_and_json_caption_files(sample_archive, tmp_path, encoder):
    relative = "ucm_captions/images/beach/beach00.jpg"
    jsonl = tmp_path / "extra.jsonl"
    jsonl.write_text("\n".join([
        json.dumps({"image": f"archive/{relative}", "caption": "a sandy shore next to the sea"}),
        json.dumps({"captions": ["an unattached caption"]}),
    ]), encoding="utf-8")
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps([{"image": f"archive/{relative}", "captions": ["waves reach the beach"],
                                   "label": "beach"}]), encoding="utf-8")
    root = tmp_path / "snapshots"
    build_snapshot(_config(sample_archive, root, caption_files=[jsonl, listed]), encoder)
    with open_current_snapshot(root) as snapshot:
        captions = snapshot.get_image(image_id_from_path(relative)).captions
        assert "a sandy shore next to the sea" in captions
        assert "waves reach the beach" in captions
        assert "an unattached caption" in snapshot.caption_texts()


@pytest.mark.parametrize("name,content,message", [
    ("bad.jsonl", "{not json\n", "not valid JSON"),
    ("bad.jsonl", json.dumps({"image": "x.jpg"}) + "\n", "needs 'caption'"),
    ("bad.csv", "a,b\n", "unsupported caption file type"),
    ("bad.json", "[]", "non-empty JSON list"),
])
def test_bad_caption_file_rejected(sample_archive, tmp_path, encoder, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ArchiveError, match=message):
        build_snapshot(_config(sample_archive, tmp_path / "snapshots", caption_files=[path]), encoder)


def test_bad_annotation_in_archive_skipped(sample_archive, tmp_path, encoder):
    (sample_archive / "broken").mkdir()
    (sample_archive / "broken" / "annotations.json").write_text("{", encoding="utf-8")
    report = build_snapshot(_config(sample_archive, tmp_path / "snapshots"), encoder)
    assert "invalid annotation file" in dict(report.skipped)["broken/annotations.json"]


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_types_on_small_archive(sample_archive, tmp_path, encoder, index_type):
    root = tmp_path / index_type
    build_snapshot(_config(sample_archive, root, index_type=index_type), encoder)
    build_snapshot(_config(sample_archive, tmp_path / "flat", index_type="flat"), encoder)
    queries = encoder.encode_texts(["beach", "forest"])
    with open_current_snapshot(root) as approximate, open_current_snapshot(tmp_path / "flat") as exact:
        assert approximate.manifest["images_index"]["index_type"] == index_type
        assert approximate.search_images(queries, 3, nprobe=1, ef_search=16)[0][0][0] == \
            exact.search_images(queries, 3)[0][0][0]


def test_old_snapshots_pruned(sample_archive, tmp_path, encoder):
    root = tmp_path / "snapshots"
    versions = [build_snapshot(_config(sample_archive, root, keep_snapshots=2), encoder).version for _ in range(3)]
    assert sorted(path.name for path in (root / "snapshots").iterdir()) == versions[1:]


def test_update_with_other_decode_rejected(sample_archive, tmp_path, encoder):
    from index.decode import DecodeConfig

    root = tmp_path / "snapshots"
    build_snapshot(_config(sample_archive, root), encoder)
    with pytest.raises(SnapshotMismatch, match="full build"):
        update_snapshot(_config(sample_archive, root, decode=DecodeConfig(rgb_bands=(2, 1, 0))), encoder)


def test_empty_archive_builds_empty_snapshot(tmp_path, encoder):
    archive = tmp_path / "empty"
    archive.mkdir()
    root = tmp_path / "snapshots"
    report = build_snapshot(_config(archive, root), encoder)
    assert report.image_count == 0
    with open_current_snapshot(root) as snapshot:
        assert snapshot.search_images(encoder.encode_texts(["beach"]), 5) == [[]]


def test_identical_files_embedded_once(tmp_path, encoder):
    archive = tmp_path / "copies"
    archive.mkdir()
    source = DATA / "ucm_captions" / "images" / "beach" / "beach00.jpg"
    for name in ("a.jpg", "b.jpg"):
        shutil.copyfile(source, archive / name)
    report = build_snapshot(_config(archive, tmp_path / "snapshots"), encoder)
    assert report.image_count == 2
    assert report.embedded == 1
