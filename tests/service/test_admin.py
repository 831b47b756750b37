"""Admin token cases, job lifecycle and a rebuild while queries run."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.service.conftest import copy_snapshot_root, server_settings
from tests.service.server import ServerProcess
from tests.service.test_api import assert_envelope

ADMIN_PATHS = [("POST", "/v1/admin/index/rebuild"), ("POST", "/v1/admin/index/update"),
               ("GET", "/v1/admin/jobs/some-job")]
JOB_TIMEOUT_S = 60.0


def wait_for_job(client, job_id: str, headers: dict) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = client.get(f"/v1/admin/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish within {JOB_TIMEOUT_S}s")


@pytest.mark.parametrize("method,path", ADMIN_PATHS)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic dGVzdA==", "Bearer", "token-without-scheme"])
def test_missing_or_invalid_token_is_401(client, method, path, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.request(method, path, headers=headers)
    assert_envelope(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture(scope="module")
def tokenless_server(archive, built_snapshot_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenless")
    root = copy_snapshot_root(built_snapshot_root, folder / "snapshots")
    process = ServerProcess(server_settings(archive, root, admin_token=""), folder / "server.log").start()
    yield process
    process.stop()


@pytest.mark.parametrize("method,path", ADMIN_PATHS)
def test_admin_disabled_without_configured_token_is_403(tokenless_server, method, path):
    with tokenless_server.client() as http:
        for headers in ({}, {"Authorization": "Bearer anything"}):
            error = assert_envelope(http.request(method, path, headers=headers), 403, "admin_disabled")
            assert "HARMA_ADMIN_TOKEN" in error["message"]
        assert http.get("/v1/info").json()["admin_enabled"] is False


def test_unknown_job_is_404(client, admin_headers):
    assert_envelope(client.get("/v1/admin/jobs/nope", headers=admin_headers), 404, "job_not_found")


def test_update_job_reuses_vectors(client, admin_headers):
    before = client.get("/v1/info").json()["snapshot"]["version"]
    accepted = client.post("/v1/admin/index/update", headers=admin_headers)
    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(client, accepted.json()["job_id"], admin_headers)
    assert job["state"] == "succeeded", job
    assert job["kind"] == "update"
    assert job["reused"] == 28
    assert job["embedded"] == 0
    assert job["skipped"] == []
    after = client.get("/v1/info").json()["snapshot"]["version"]
    assert after == job["snapshot_version"] != before


def test_second_concurrent_job_is_409(client, admin_headers):
    first = client.post("/v1/admin/index/rebuild", headers=admin_headers)
    assert first.status_code == 202
    second = client.post("/v1/admin/index/rebuild", headers=admin_headers)
    third = client.post("/v1/admin/index/update", headers=admin_headers)
    assert_envelope(second, 409, "job_running")
    assert_envelope(third, 409, "job_running")
    assert wait_for_job(client, first.json()["job_id"], admin_headers)["state"] == "succeeded"


def test_rebuild_while_queries_run(server, client, admin_headers):
    """Queries keep succeeding through a rebuild and the swap; both versions answer some of them."""
    before = client.get("/v1/info").json()["snapshot"]["version"]
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()

    def query_loop(worker: int) -> None:
        with server.client() as http:
            for number in range(400):  # bounded in count; also stopped below
                if stop.is_set():
                    return
                try:
                    if number % 3 == 0:
                        response = http.post("/v1/search/image", data={"image_id": "no-such-id", "k": "2"})
                        ok = response.status_code == 404
                    else:
                        response = http.post("/v1/search/text", json={"text": f"query {worker} {number}", "k": 3})
                        ok = response.status_code == 200 and len(response.json()["results"]) == 3
                        if ok:
                            versions.append(response.json()["snapshot_version"])
                    if not ok:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                except httpx.HTTPError as error:
                    failures.append(repr(error))

    workers = [threading.Thread(target=query_loop, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(0.5)
    accepted = client.post("/v1/admin/index/rebuild", headers=admin_headers)
    job = wait_for_job(client, accepted.json()["job_id"], admin_headers)
    time.sleep(0.5)
    stop.set()
    for worker in workers:
        worker.join(60)
    assert job["state"] == "succeeded", job
    assert job["embedded"] == 28
    assert failures == []
    assert before in versions
    assert job["snapshot_version"] in versions
    assert client.get("/v1/info").json()["snapshot"]["version"] == job["snapshot_version"]
