"""The micro-batcher, the snapshot holder and settings, without a server."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from service.batching import BatcherConfig, MicroBatcher, QueueFull
from service.core.config import Settings
from service.core.errors import Unavailable
from service.snapshots import SnapshotHolder


def test_batcher_groups_concurrent_items():
    sizes: list[int] = []

    def encode(items):
        sizes.append(len(items))
        return np.array([[float(item), 2.0 * item] for item in items], dtype=np.float32)

    batcher = MicroBatcher(encode, BatcherConfig(max_batch_size=8, max_wait_s=0.05), name="test")
    try:
        futures = [batcher.submit(number) for number in range(20)]
        results = [future.result(timeout=5) for future in futures]
    finally:
        batcher.close()
    for number, vector in enumerate(results):
        assert vector.tolist() == [number, 2.0 * number]
    assert max(sizes) == 8
    assert sum(sizes) == 20
    assert len(sizes) < 20


def test_batcher_passes_errors_to_each_caller():
    def encode(items):
        raise ValueError("broken encoder")

    batcher = MicroBatcher(encode, BatcherConfig(max_batch_size=4, max_wait_s=0.01), name="test")
    try:
        futures = [batcher.submit(n) for n in range(3)]
        for future in futures:
            with pytest.raises(ValueError, match="broken encoder"):
                future.result(timeout=5)
        # The worker survives a failed batch.
        batcher._encode = lambda items: np.ones((len(items), 2), dtype=np.float32)
        assert batcher.submit(1).result(timeout=5).tolist() == [1.0, 1.0]
    finally:
        batcher.close()


def test_batcher_rejects_when_queue_full():
    release = threading.Event()

    def encode(items):
        release.wait(5)
        return np.zeros((len(items), 1), dtype=np.float32)

    batcher = MicroBatcher(encode, BatcherConfig(max_batch_size=1, max_wait_s=0.0, max_pending=2), name="test")
    try:
        first = batcher.submit(0)
        time.sleep(0.2)  # the worker now blocks on the first item
        batcher.submit(1)
        batcher.submit(2)
        with pytest.raises(QueueFull):
            batcher.submit(3)
        release.set()
        assert first.result(timeout=5).shape == (1,)
    finally:
        release.set()
        batcher.close()


class FakeSnapshot:
    """Records close calls; a real snapshot is exercised by the server tests."""

    def __init__(self, version: str):
        self.version, self.image_count, self.caption_count = version, 1, 1
        self.closed = False

    def close(self):
        self.closed = True


def test_holder_closes_replaced_snapshot_after_last_lease():
    holder = SnapshotHolder()
    old, new = FakeSnapshot("old"), FakeSnapshot("new")
    holder.swap(old)
    with holder.lease() as leased:
        assert leased is old
        holder.swap(new)
        assert not old.closed, "a leased snapshot stays open across a swap"
        with holder.lease() as current:
            assert current is new
    assert old.closed
    assert not new.closed
    holder.close()
    assert new.closed


def test_holder_without_snapshot_is_unavailable():
    with pytest.raises(Unavailable) as caught:
        with SnapshotHolder().lease():
            pass
    assert caught.value.status_code == 503
    assert caught.value.headers["Retry-After"] == "5"


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("HARMA_MAX_K", "7")
    monkeypatch.setenv("HARMA_ADMIN_TOKEN", "")
    monkeypatch.setenv("HARMA_CORS_ORIGINS", '["http://localhost:3000"]')
    settings = Settings(_env_file=None)
    assert settings.max_k == 7
    assert settings.admin_token is None
    assert settings.admin_enabled is False
    assert settings.cors_origins == ["http://localhost:3000"]
    assert "s3cret" not in repr(Settings(_env_file=None, admin_token="s3cret"))
