"""End-to-end snapshot with the shipped default model (slow; needs its trained weights)."""

from __future__ import annotations

import pytest

from index.build import BuildConfig, build_snapshot
from index.snapshot import open_current_snapshot
from model.encoder import DEFAULT_CHECKPOINT, load_encoder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_dir(), reason=f"default weights missing: {DEFAULT_CHECKPOINT}"),
]


def test_default_model_finds_beaches(sample_archive, tmp_path):
    encoder = load_encoder("default")
    root = tmp_path / "snapshots"
    build_snapshot(BuildConfig(archive_dir=sample_archive, snapshot_root=root, num_workers=0), encoder)
    with open_current_snapshot(root, encoder_fingerprint=encoder.fingerprint, embed_dim=encoder.embed_dim) as snapshot:
        hits = snapshot.search_images(encoder.encode_texts(["a sandy beach next to the blue sea"]), 3)[0]
        labels = [snapshot.get_image(image_id).label for image_id, _ in hits]
        assert "beach" in labels
