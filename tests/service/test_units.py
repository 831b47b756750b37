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

    batcher = MicroBatcher({"number": encode}, BatcherConfig(max_batch_size=8, max_wait_s=0.05), name="test")
    try:
        futures = [batcher.submit("number", number) for number in range(20)]
        results = [future.result(timeout=5) for future in futures]
    finally:
        batcher.close()
    for number, vector in enumerate(results):
        assert vector.tolist() == [number, 2.0 * number]
    assert max(sizes) == 8
    assert sum(sizes) == 20
    assert len(sizes) < 20


def test_batcher_lone_item_does_not_wait():
    batcher = MicroBatcher({"number": lambda items: np.zeros((len(items), 1), dtype=np.float32)},
                           BatcherConfig(max_batch_size=8, max_wait_s=2.0), name="test")
    try:
        started = time.monotonic()
        batcher.submit("number", 1).result(timeout=5)
        elapsed_s = time.monotonic() - started
    finally:
        batcher.close()
    assert elapsed_s < 1.0  # far below max_wait_s: a first batch expects one item


def test_batcher_waits_for_previous_batch_size():
    sizes: list[int] = []
    release = threading.Event()

    def encode(items):
        sizes.append(len(items))
        return np.zeros((len(items), 1), dtype=np.float32)

    batcher = MicroBatcher({"number": encode}, BatcherConfig(max_batch_size=8, max_wait_s=2.0), name="test")
    try:
        blocker = batcher.call(lambda: release.wait(5))
        first = [batcher.submit("number", number) for number in range(4)]
        release.set()
        blocker.result(timeout=5)
        for future in first:
            future.result(timeout=5)
        # The previous batch held 4 items, so the next one waits for 4 even though they arrive apart.
        second = []
        for number in range(4):
            second.append(batcher.submit("number", number))
            time.sleep(0.05)
        for future in second:
            future.result(timeout=5)
    finally:
        release.set()
        batcher.close()
    assert sizes == [4, 4]


def test_batcher_encodes_each_kind_separately():
    calls: list[tuple[str, list]] = []

    def encoder(kind):
        def encode(items):
            calls.append((kind, list(items)))
            return np.array([[len(kind), float(item)] for item in items], dtype=np.float32)
        return encode

    release = threading.Event()
    batcher = MicroBatcher({"text": encoder("text"), "image": encoder("image")},
                           BatcherConfig(max_batch_size=8, max_wait_s=0.0), name="test")
    try:
        blocker = batcher.call(lambda: release.wait(5))  # blocks the worker while both kinds queue up
        futures = [batcher.submit("text" if number % 2 else "image", number) for number in range(6)]
        release.set()
        assert blocker.result(timeout=5) is True
        results = [future.result(timeout=5).tolist() for future in futures]
    finally:
        release.set()
        batcher.close()
    assert results == [[5.0, 0.0], [4.0, 1.0], [5.0, 2.0], [4.0, 3.0], [5.0, 4.0], [4.0, 5.0]]
    assert ("text", [1, 3, 5]) in calls
    assert ("image", [0, 2, 4]) in calls


def test_batcher_runs_continuation_on_worker_thread():
    batcher = MicroBatcher({"number": lambda items: np.ones((len(items), 2), dtype=np.float32)},
                           BatcherConfig(max_batch_size=4, max_wait_s=0.0), name="test")
    try:
        worker = batcher.call(threading.get_ident).result(timeout=5)
        total, thread = batcher.submit("number", 7, then=lambda vector: (float(vector.sum()),
                                                                        threading.get_ident())).result(timeout=5)
    finally:
        batcher.close()
    assert total == 2.0
    assert thread == worker
    assert worker != threading.get_ident()


def test_batcher_continuation_error_stays_with_its_caller():
    def then(vector):
        raise LookupError("no such image")

    batcher = MicroBatcher({"number": lambda items: np.zeros((len(items), 1), dtype=np.float32)},
                           BatcherConfig(max_batch_size=4, max_wait_s=0.05), name="test")
    try:
        failing = batcher.submit("number", 1, then=then)
        passing = batcher.submit("number", 2, then=lambda vector: "found")
        with pytest.raises(LookupError, match="no such image"):
            failing.result(timeout=5)
        assert passing.result(timeout=5) == "found"
    finally:
        batcher.close()


def test_batcher_rejects_unknown_kind():
    batcher = MicroBatcher({"text": lambda items: np.zeros((len(items), 1))}, BatcherConfig(), name="test")
    try:
        with pytest.raises(KeyError, match="'audio'"):
            batcher.submit("audio", b"...")
    finally:
        batcher.close()


def test_batcher_passes_errors_to_each_caller():
    state = {"broken": True}

    def encode(items):
        if state["broken"]:
            raise ValueError("broken encoder")
        return np.ones((len(items), 2), dtype=np.float32)

    batcher = MicroBatcher({"number": encode}, BatcherConfig(max_batch_size=4, max_wait_s=0.01), name="test")
    try:
        futures = [batcher.submit("number", n) for n in range(3)]
        for future in futures:
            with pytest.raises(ValueError, match="broken encoder"):
                future.result(timeout=5)
        # The worker survives a failed batch.
        state["broken"] = False
        assert batcher.submit("number", 1).result(timeout=5).tolist() == [1.0, 1.0]
    finally:
        batcher.close()


def test_batcher_rejects_when_queue_full():
    release = threading.Event()

    def encode(items):
        release.wait(5)
        return np.zeros((len(items), 1), dtype=np.float32)

    batcher = MicroBatcher({"number": encode}, BatcherConfig(max_batch_size=1, max_wait_s=0.0, max_pending=2),
                           name="test")
    try:
        first = batcher.submit("number", 0)
        time.sleep(0.2)  # the worker now blocks on the first item
        batcher.submit("number", 1)
        batcher.call(lambda: None)
        with pytest.raises(QueueFull):
            batcher.submit("number", 3)
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
