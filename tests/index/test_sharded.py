"""Sharded embedding on two workers, the merge, and on-disk IVF snapshots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from index.build import BuildConfig, build_snapshot
from index.decode import DecodeConfig
from index.cli import main
from index.errors import BuildCancelled, IndexConfigError, ShardsIncomplete, SnapshotCorrupt, SnapshotMismatch
from index.faiss_index import IndexSettings
from index.merge import MergeConfig, merge_shards
from index.publish import publish, staging_path
from index.sharded import ShardJobConfig, ShardSpec, embed_shard, resolve_shard_spec, shard_of_path
from index.snapshot import open_current_snapshot, open_snapshot
from index.store import ImageRow
from index.writer import write_snapshot_files
from tests.index.conftest import make_sample_archive

REPO = Path(__file__).resolve().parents[2]
SHARD_COMMAND = [sys.executable, "-m", "index", "embed-shard", "--model", "tiny-vit", "--workers", "0",
                 "--batch-size", "4"]
QUERIES = ["a beach with waves", "green forest", "a harbor with boats", "planes at an airport"]


def _child_env() -> dict[str, str]:
    # One thread per process: the two workers share the test machine's cores.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run_two_workers(archive: Path, work: Path) -> None:
    """Start shards 0 and 1 of 2 as independent processes, as two array tasks would run."""
    workers = [subprocess.Popen(SHARD_COMMAND + ["--archive", str(archive), "--work", str(work),
                                                 "--shard", str(shard), "--num-shards", "2"],
                                cwd=REPO, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for shard in (0, 1)]
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=180)
        assert worker.returncode == 0, stderr.decode()[-2000:]
        assert b"shard " in stdout


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory, encoder):
    """Return the archive, a work folder filled by two workers, and a single-process build root."""
    folder = tmp_path_factory.mktemp("sharded")
    archive = make_sample_archive(folder)
    work = folder / "work"
    _run_two_workers(archive, work)
    single = folder / "single"
    build_snapshot(BuildConfig(archive_dir=archive, snapshot_root=single, num_workers=0, batch_size=4), encoder)
    return archive, work, single


def _assert_same_snapshot(merged, single, encoder) -> None:
    assert merged.image_ids() == single.image_ids()
    for image_id in single.image_ids():
        assert merged.get_image(image_id) == single.get_image(image_id)
        np.testing.assert_allclose(merged.image_vector(image_id), single.image_vector(image_id), atol=1e-6)
    assert merged.caption_texts() == single.caption_texts()
    np.testing.assert_allclose(merged.caption_vectors(), single.caption_vectors(), atol=1e-6)
    queries = encoder.encode_texts(QUERIES)  # [4, dim]
    assert [[hit[0] for hit in hits] for hits in merged.search_images(queries, 5)] == \
        [[hit[0] for hit in hits] for hits in single.search_images(queries, 5)]
    images = np.stack([single.image_vector(image_id) for image_id in single.image_ids()[:3]])
    assert [[hit[0] for hit in hits] for hits in merged.search_captions(images, 5)] == \
        [[hit[0] for hit in hits] for hits in single.search_captions(images, 5)]


def test_shard_assignment_stable_and_complete():
    paths = [f"scenes/{number:04d}.tif" for number in range(2000)]
    shards = [shard_of_path(path, 4) for path in paths]
    assert shards == [shard_of_path(path, 4) for path in paths]
    counts = np.bincount(shards, minlength=4)
    assert counts.sum() == len(paths)
    assert counts.min() > 400  # a stable hash spreads paths evenly
    assert shard_of_path("scenes/0001.tif", 1) == 0


@pytest.mark.parametrize("shard,num_shards,environ,expected", [
    (1, 3, {}, ShardSpec(1, 3)),
    (None, None, {"RANK": "1", "WORLD_SIZE": "2"}, ShardSpec(1, 2)),
    (0, 2, {"RANK": "1", "WORLD_SIZE": "4"}, ShardSpec(0, 2)),
])
def test_shard_spec_sources(shard, num_shards, environ, expected):
    assert resolve_shard_spec(shard, num_shards, environ) == expected


@pytest.mark.parametrize("shard,num_shards,environ,message", [
    (None, None, {}, "torchrun"),
    (1, None, {}, "both"),
    (2, 2, {}, "0..1"),
    (0, 0, {}, ">= 1"),
    (None, None, {"RANK": "x", "WORLD_SIZE": "2"}, "integers"),
])
def test_invalid_shard_spec_rejected(shard, num_shards, environ, message):
    with pytest.raises(IndexConfigError, match=message):
        resolve_shard_spec(shard, num_shards, environ)


@pytest.mark.parametrize("index_type", ["flat", "ivf", "ivf-ondisk"])
def test_two_workers_merge_equals_single_build(sharded_run, tmp_path, encoder, index_type):
    archive, work, single = sharded_run
    root = tmp_path / "merged"
    report = merge_shards(MergeConfig(work_dir=work, snapshot_root=root, index_type=index_type), encoder)
    assert report.image_count == 12
    with open_current_snapshot(root) as merged, open_current_snapshot(single) as reference:
        assert merged.manifest["images_index"]["index_type"] == index_type
        assert merged.manifest["build"]["shards"] == 2
        _assert_same_snapshot(merged, reference, encoder)


def test_torchrun_two_ranks_merge(sharded_run, tmp_path, encoder):
    archive, first_work, single = sharded_run
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    work = tmp_path / "work"
    command = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "index", "embed-shard",
               "--model", "tiny-vit", "--workers", "0", "--archive", str(archive), "--work", str(work)]
    finished = subprocess.run(command, cwd=REPO, env=_child_env(), capture_output=True, timeout=180)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    assert sorted(path.name for path in work.iterdir()) == ["shard-00000-of-00002", "shard-00001-of-00002"]
    for name in ("shard-00000-of-00002", "shard-00001-of-00002"):
        assert (work / name / "shard.json").read_text() != ""
        np.testing.assert_allclose(np.load(work / name / "vectors.npy"), np.load(first_work / name / "vectors.npy"),
                                   atol=1e-6)
    root = tmp_path / "merged"
    merge_shards(MergeConfig(work_dir=work, snapshot_root=root), encoder)
    with open_current_snapshot(root) as merged, open_current_snapshot(single) as reference:
        _assert_same_snapshot(merged, reference, encoder)


def test_merge_names_missing_shards(sharded_run, tmp_path, encoder):
    work = tmp_path / "work"
    shutil.copytree(sharded_run[1], work)
    (work / "shard-00001-of-00002" / "shard.json").unlink()
    with pytest.raises(ShardsIncomplete, match=r"shard indexes 1 \(shard 1: shard.json not written yet"):
        merge_shards(MergeConfig(work_dir=work, snapshot_root=tmp_path / "merged"), encoder)
    with pytest.raises(ShardsIncomplete, match=r"4 of 4 shards .* shard indexes 0, 1, 2, 3 .*shard-00000-of-00004 not found"):
        merge_shards(MergeConfig(work_dir=sharded_run[1], snapshot_root=tmp_path / "merged", num_shards=4), encoder)
    assert not (tmp_path / "merged" / "CURRENT").exists()


def test_merge_rejects_truncated_vectors(sharded_run, tmp_path, encoder):
    work = tmp_path / "work"
    shutil.copytree(sharded_run[1], work)
    vectors = work / "shard-00000-of-00002" / "vectors.npy"
    np.save(vectors, np.load(vectors)[:2])
    with pytest.raises(ShardsIncomplete, match="shard indexes 0 .*vectors.npy has shape"):
        merge_shards(MergeConfig(work_dir=work, snapshot_root=tmp_path / "merged"), encoder)


def test_merge_with_other_encoder_rejected(sharded_run, tmp_path, other_encoder):
    with pytest.raises(SnapshotMismatch, match="merge with the encoder the shards used"):
        merge_shards(MergeConfig(work_dir=sharded_run[1], snapshot_root=tmp_path / "merged"), other_encoder)


def test_merge_without_shards_fails(tmp_path, encoder):
    (tmp_path / "work").mkdir()
    with pytest.raises(ShardsIncomplete, match="no shard folders"):
        merge_shards(MergeConfig(work_dir=tmp_path / "work", snapshot_root=tmp_path / "merged"), encoder)


class _SyntheticEncoder:
    """The encoder fields a snapshot writer records, for snapshots of synthetic vectors."""

    source = "synthetic"
    fingerprint = "0123456789abcdef"
    identity = {"kind": "synthetic unit vectors"}
    embed_dim = 32


def _write_synthetic_snapshot(root: Path, vectors: np.ndarray, index_type: str, parts=None):
    rows = [ImageRow(row, f"v{row:05d}", f"v{row:05d}.png", f"v{row:05d}.png", 1, f"{row:064x}", 1, 1, None, None)
            for row in range(len(vectors))]
    staging = staging_path(root, f"v-{index_type}")
    write_snapshot_files(staging, version=f"v-{index_type}", encoder=_SyntheticEncoder(), images=rows,
                         image_vectors=vectors, captions=[], caption_vectors=np.zeros((0, 32), np.float32),
                         settings=IndexSettings(index_type=index_type, ivf_nlist=32, ivf_nprobe=4),
                         extra_manifest={"archive_dir": str(root)}, decode=DecodeConfig(), image_parts=parts)
    return publish(root, staging)


def test_ondisk_ivf_equals_in_memory_ivf(tmp_path):
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # [3000, 32]
    queries = vectors[::97] + 0.05 * rng.standard_normal((31, 32)).astype(np.float32)
    in_memory = _write_synthetic_snapshot(tmp_path / "memory", vectors, "ivf")
    parts = [np.arange(0, 3000, 3), np.arange(1, 3000, 3), np.arange(2, 3000, 3)]
    on_disk = _write_synthetic_snapshot(tmp_path / "disk", vectors, "ivf-ondisk", parts)
    assert (on_disk / "images.ivfdata").stat().st_size > vectors.nbytes
    os.chmod(on_disk / "images.ivfdata", 0o444)  # a published snapshot is never written

    with open_snapshot(in_memory) as memory, open_snapshot(on_disk) as disk:
        lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(disk._image_index).invlists)
        assert isinstance(lists, faiss.OnDiskInvertedLists)
        assert lists.prefetch_nthread == 0
        assert disk.manifest["images_index"] == {**memory.manifest["images_index"], "index_type": "ivf-ondisk"}
        for nprobe in (None, 1, 32):
            expected = memory.search_images(queries, 10, nprobe=nprobe)
            found = disk.search_images(queries, 10, nprobe=nprobe)
            assert [[hit[0] for hit in hits] for hits in found] == [[hit[0] for hit in hits] for hits in expected]
            np.testing.assert_allclose([[hit[1] for hit in hits] for hits in found],
                                       [[hit[1] for hit in hits] for hits in expected], atol=1e-6)


def test_ondisk_snapshot_without_list_file_rejected(tmp_path):
    vectors = np.eye(32, dtype=np.float32).repeat(40, axis=0)  # [1280, 32]
    path = _write_synthetic_snapshot(tmp_path / "disk", vectors, "ivf-ondisk")
    (path / "images.ivfdata").unlink()
    with pytest.raises(SnapshotCorrupt, match="missing images.ivfdata"):
        open_snapshot(path)


def test_ondisk_ivf_parts_must_cover_rows(tmp_path):
    vectors = np.eye(32, dtype=np.float32).repeat(40, axis=0)  # [1280, 32]
    with pytest.raises(IndexConfigError, match="exactly once"):
        _write_synthetic_snapshot(tmp_path / "disk", vectors, "ivf-ondisk", [np.arange(0, 1000)])


def test_cli_merge_reports_missing_shard(sharded_run, tmp_path, capsys):
    work = tmp_path / "work"
    shutil.copytree(sharded_run[1], work)
    shutil.rmtree(work / "shard-00000-of-00002")
    code = main(["merge", "--model", "tiny-vit", "--work", str(work), "--snapshots", str(tmp_path / "merged")])
    assert code == 2
    assert "shard indexes 0 (shard 0: folder shard-00000-of-00002 not found)" in capsys.readouterr().err


def test_cli_merge_publishes_snapshot(sharded_run, tmp_path, capsys):
    root = tmp_path / "merged"
    code = main(["merge", "--model", "tiny-vit", "--work", str(sharded_run[1]), "--snapshots", str(root),
                 "--index-type", "ivf-ondisk"])
    assert code == 0
    assert "published" in capsys.readouterr().out
    with open_current_snapshot(root) as merged:
        assert merged.image_count == 12
        assert merged.manifest["images_index"]["index_type"] == "ivf-ondisk"


def test_merge_config_rejects_zero_shards(tmp_path):
    with pytest.raises(IndexConfigError, match="num_shards"):
        MergeConfig(work_dir=tmp_path, snapshot_root=tmp_path, num_shards=0)


def test_cancelled_shard_resumes(tmp_path, encoder):
    archive = make_sample_archive(tmp_path)
    config = ShardJobConfig(archive_dir=archive, work_dir=tmp_path / "work", batch_size=2, chunk_size=2,
                            num_workers=0)
    with pytest.raises(BuildCancelled):
        embed_shard(config, encoder, ShardSpec(0, 2), should_stop=lambda: True)
    with pytest.raises(ShardsIncomplete, match="shard indexes 0, 1"):
        merge_shards(MergeConfig(work_dir=config.work_dir, snapshot_root=tmp_path / "merged", num_shards=2), encoder)

    report = embed_shard(config, encoder, ShardSpec(0, 2))
    assert report.reused == 2  # the one batch embedded before the stop
    assert report.embedded == report.file_count - 2
    assert not list(report.path.glob("chunks-*"))


def test_merge_rejects_disagreeing_shards(sharded_run, tmp_path, encoder):
    work = tmp_path / "work"
    shutil.copytree(sharded_run[1], work)
    manifest_path = work / "shard-00001-of-00002" / "shard.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["decode"]["rgb_bands"] = [2, 1, 0]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ShardsIncomplete, match="shard 1 has decode"):
        merge_shards(MergeConfig(work_dir=work, snapshot_root=tmp_path / "merged"), encoder)
