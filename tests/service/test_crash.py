"""A server killed during a rebuild restarts on the last published snapshot."""

from __future__ import annotations

import time

from tests.service.conftest import ADMIN_TOKEN, UCM_DIR, copy_snapshot_root, server_settings
from tests.service.server import ServerProcess

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_crash_mid_rebuild_then_restart(built_snapshot_root, tmp_path):
    root = copy_snapshot_root(built_snapshot_root, tmp_path / "snapshots")
    # The full bundled UCM archive (2,100 images) makes the rebuild long enough to kill midway.
    settings = server_settings(UCM_DIR, root)
    first = ServerProcess(settings, tmp_path / "first.log").start()
    try:
        with first.client() as http:
            published = http.get("/v1/info").json()["snapshot"]["version"]
            job_id = http.post("/v1/admin/index/rebuild", headers=HEADERS).json()["job_id"]
            deadline = time.monotonic() + 60
            job = {}
            while time.monotonic() < deadline:
                job = http.get(f"/v1/admin/jobs/{job_id}", headers=HEADERS).json()
                if job["progress"]["stage"] == "embed_images" and job["progress"]["done"] > 0:
                    break
                time.sleep(0.05)
            assert job["state"] == "running", job
            assert job["progress"]["done"] < job["progress"]["total"]
    finally:
        first.kill()

    second = ServerProcess(settings, tmp_path / "second.log").start()
    try:
        with second.client() as http:
            assert http.get("/readyz").status_code == 200
            info = http.get("/v1/info").json()
            assert info["snapshot"]["version"] == published
            assert info["snapshot"]["image_count"] == 28
            results = http.post("/v1/search/text", json={"text": "a harbor", "k": 3}).json()["results"]
            assert len(results) == 3
            assert http.get(results[0]["thumbnail_url"]).status_code == 200
            # The killed build left no lock behind: a new job starts and runs.
            restarted = http.post("/v1/admin/index/rebuild", headers=HEADERS)
            assert restarted.status_code == 202, restarted.text
            time.sleep(1.0)
            job = http.get(restarted.json()["status_url"], headers=HEADERS).json()
            assert job["state"] in ("running", "succeeded"), job
    finally:
        second.stop()
    assert "cancelled" in second.log().lower() or "published snapshot" in second.log()
