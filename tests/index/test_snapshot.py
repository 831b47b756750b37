"""Snapshot contents and search on the bundled sample, checked against brute force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from index.build import BuildConfig, build_snapshot
from index.errors import IndexConfigError, SnapshotMismatch, SnapshotNotFound
from index.ids import image_id_from_path
from index.snapshot import open_current_snapshot
from PIL import Image

from tests.index.conftest import RSSCN7_COUNT, UCM_CLASSES, UCM_PER_CLASS, make_sample_archive

IMAGE_COUNT = len(UCM_CLASSES) * UCM_PER_CLASS + RSSCN7_COUNT


@pytest.fixture(scope="module")
def built(tmp_path_factory, encoder):
    archive = make_sample_archive(tmp_path_factory.mktemp("sample"))
    root = tmp_path_factory.mktemp("snapshots")
    corpus = archive.parent / "extra.txt"
    corpus.write_text("a harbor with many boats\n\nThere is a piece of farmland .\n", encoding="utf-8")
    report = build_snapshot(BuildConfig(archive_dir=archive, snapshot_root=root, caption_files=[corpus],
                                        batch_size=4, num_workers=2), encoder)
    snapshot = open_current_snapshot(root, encoder_fingerprint=encoder.fingerprint, embed_dim=encoder.embed_dim)
    yield report, snapshot, archive, root
    snapshot.close()


def test_report_counts(built):
    report = built[0]
    assert report.image_count == IMAGE_COUNT
    assert report.embedded == IMAGE_COUNT
    assert report.reused == 0
    assert report.skipped == []


def test_snapshot_layout(built):
    report, snapshot, _, root = built
    assert (root / "CURRENT").read_text().strip() == report.version
    assert snapshot.path == root / "snapshots" / report.version
    assert not (root / ".staging").exists() or not any((root / ".staging").iterdir())
    assert not (root / ".work").exists() or not any((root / ".work").iterdir())


def test_manifest_fields(built, encoder):
    manifest = built[1].manifest
    assert manifest["encoder"]["fingerprint"] == encoder.fingerprint
    assert manifest["encoder"]["identity"] == json.loads(json.dumps(encoder.identity))
    assert manifest["embed_dim"] == encoder.embed_dim
    assert manifest["image_count"] == IMAGE_COUNT
    assert manifest["images_index"]["index_type"] == "flat"
    assert "created_at" in manifest


def test_image_record_from_annotations(built):
    snapshot, archive = built[1], built[2]
    relative = "ucm_captions/images/beach/beach00.jpg"
    record = snapshot.get_image(image_id_from_path(relative))
    assert record.path == archive.resolve() / relative
    assert record.path.is_file()
    assert record.label == "beach"
    assert record.size_bytes == record.path.stat().st_size
    assert (record.width, record.height) == (256, 256)
    assert len(record.captions) >= 1
    assert record.geo is None


def test_rsscn7_label_without_captions(built):
    record = built[1].get_image(image_id_from_path("rsscn7/images/bField/b001.jpg"))
    assert record.label == "field"
    assert record.captions == []


def test_captions_deduplicated_with_owners(built):
    snapshot = built[1]
    texts = [snapshot.get_caption(row).text for row in range(snapshot.caption_count)]
    assert len(texts) == len(set(texts))
    farmland = snapshot.get_caption(texts.index("There is a piece of farmland ."))
    assert len(farmland.image_ids) == 2  # both agricultural images carry this caption
    assert all("agricultural" in image_id for image_id in farmland.image_ids)
    assert snapshot.get_caption(texts.index("a harbor with many boats")).image_ids == []


def test_unknown_ids_return_none(built):
    snapshot = built[1]
    assert snapshot.get_image("missing.jpg") is None
    assert snapshot.get_caption(10**6) is None
    assert snapshot.image_vector("missing.jpg") is None


def test_image_search_matches_brute_force(built, encoder):
    snapshot = built[1]
    queries = encoder.encode_texts(["a beach with waves", "dense forest", "airplanes at an airport"])
    vectors = np.stack([snapshot.image_vector(image_id) for image_id in snapshot.image_ids()])
    expected = queries @ vectors.T  # [queries, images]
    hits = snapshot.search_images(queries, 5)
    for query_hits, scores in zip(hits, expected):
        order = np.argsort(-scores)[:5]
        assert [image_id for image_id, _ in query_hits] == [snapshot.image_ids()[i] for i in order]
        np.testing.assert_allclose([score for _, score in query_hits], scores[order], rtol=1e-5, atol=1e-6)


def test_caption_search_matches_brute_force(built, encoder):
    snapshot = built[1]
    query = encoder.encode_images([Image.open(snapshot.get_image(snapshot.image_ids()[0]).path)])
    texts = [snapshot.get_caption(row).text for row in range(snapshot.caption_count)]
    expected = query @ encoder.encode_texts(texts).T  # [1, captions]
    hits = snapshot.search_captions(query, 4)[0]
    order = np.argsort(-expected[0])[:4]
    assert [caption_id for caption_id, _ in hits] == list(order)


def test_image_vector_is_stored_embedding(built, encoder):
    snapshot = built[1]
    image_id = snapshot.image_ids()[3]
    expected = encoder.encode_images([Image.open(snapshot.get_image(image_id).path)])[0]
    np.testing.assert_allclose(snapshot.image_vector(image_id), expected, atol=1e-5)


def test_k_larger_than_count(built, encoder):
    hits = built[1].search_images(encoder.encode_texts(["beach"]), 1000)
    assert len(hits[0]) == IMAGE_COUNT


@pytest.mark.parametrize("queries,k", [(np.zeros((1, 3), np.float32), 5), (None, 0), (np.full((1, 16), np.nan), 5)])
def test_bad_queries_rejected(built, encoder, queries, k):
    queries = encoder.encode_texts(["beach"]) if queries is None else queries
    with pytest.raises(IndexConfigError):
        built[1].search_images(queries, k)


def test_other_encoder_rejected(built, other_encoder):
    with pytest.raises(SnapshotMismatch, match="fingerprint"):
        open_current_snapshot(built[3], encoder_fingerprint=other_encoder.fingerprint)


def test_other_dimension_rejected(built):
    with pytest.raises(SnapshotMismatch, match="dimension"):
        open_current_snapshot(built[3], embed_dim=built[1].embed_dim + 1)


def test_missing_snapshot_reported(tmp_path):
    with pytest.raises(SnapshotNotFound, match="harma-index build"):
        open_current_snapshot(tmp_path)


def test_concurrent_searches_agree(built, encoder):
    from concurrent.futures import ThreadPoolExecutor

    snapshot = built[1]
    queries = encoder.encode_texts(["beach", "forest", "harbor", "airplane"])
    expected = snapshot.search_images(queries, 5)

    def search_and_read(round_number: int) -> list:
        hits = snapshot.search_images(queries, 5)
        for image_id, _ in hits[round_number % len(hits)]:
            assert snapshot.get_image(image_id) is not None
        return hits

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(search_and_read, range(40)))
    assert all(result == expected for result in results)


@pytest.mark.parametrize("missing", ["images.faiss", "metadata.sqlite", "manifest.json"])
def test_incomplete_snapshot_rejected(built, tmp_path, missing):
    import shutil

    from index.errors import SnapshotCorrupt
    from index.snapshot import open_snapshot

    copy = tmp_path / "copy"
    shutil.copytree(built[1].path, copy)
    (copy / missing).unlink()
    with pytest.raises(SnapshotCorrupt, match=missing):
        open_snapshot(copy)
