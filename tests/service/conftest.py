"""Fixtures of the service tests: a small real archive, its snapshot and running servers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.service.server import REPO_ROOT, ServerProcess

ADMIN_TOKEN = "test-admin-token-5f2c"
UCM_DIR = REPO_ROOT / "data" / "ucm_captions"
RSSCN7_DIR = REPO_ROOT / "data" / "rsscn7"
TINY_MODEL = "tiny-vit"


def _copy_entries(source: Path, entries: list[dict], target: Path) -> None:
    for entry in entries:
        destination = target / entry["image"]
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / entry["image"], destination)
    (target / "annotations.json").write_text(json.dumps(entries), encoding="utf-8")


def make_archive(target: Path) -> Path:
    """Copy one captioned UCM image per class and 7 uncaptioned RSSCN7 scenes into ``target``."""
    ucm = json.loads((UCM_DIR / "annotations.json").read_text(encoding="utf-8"))
    rsscn7 = json.loads((RSSCN7_DIR / "annotations.json").read_text(encoding="utf-8"))
    _copy_entries(UCM_DIR, ucm[::100], target / "ucm")
    _copy_entries(RSSCN7_DIR, rsscn7[::10], target / "rsscn7")
    return target


def build_test_snapshot(archive: Path, snapshot_root: Path):
    from index.build import BuildConfig, build_snapshot
    from model.encoder import load_encoder

    config = BuildConfig(archive_dir=archive, snapshot_root=snapshot_root, num_workers=0, batch_size=8)
    return build_snapshot(config, load_encoder(TINY_MODEL, device="cpu"))


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Path:
    return make_archive(tmp_path_factory.mktemp("archive"))


@pytest.fixture(scope="session")
def built_snapshot_root(archive, tmp_path_factory) -> Path:
    """A snapshot root with one published snapshot; copy it before letting a server change it."""
    root = tmp_path_factory.mktemp("snapshots-template")
    build_test_snapshot(archive, root)
    return root


def copy_snapshot_root(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock"))
    return target


def server_settings(archive: Path, snapshot_root: Path, **overrides: str) -> dict[str, str]:
    settings = {"model": TINY_MODEL, "archive_dir": str(archive), "snapshot_dir": str(snapshot_root),
                "build_workers": "0", "build_batch_size": "8", "admin_token": ADMIN_TOKEN,
                "max_upload_bytes": str(2 * 1024 * 1024), "max_image_pixels": str(4_000_000),
                "max_text_chars": "500", "max_k": "50", "log_level": "INFO"}
    settings.update(overrides)
    return settings


@pytest.fixture(scope="session")
def server(archive, built_snapshot_root, tmp_path_factory):
    """The main test server, with an admin token and its own copy of the snapshot root."""
    folder = tmp_path_factory.mktemp("server")
    root = copy_snapshot_root(built_snapshot_root, folder / "snapshots")
    process = ServerProcess(server_settings(archive, root), folder / "server.log").start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def client(server):
    with server.client() as http:
        yield http


@pytest.fixture(scope="session")
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="session")
def scene_ids(client) -> list[str]:
    """Ids of archive scenes, found through a text search with a large k."""
    response = client.post("/v1/search/text", json={"text": "scene", "k": 50})
    response.raise_for_status()
    return [item["id"] for item in response.json()["results"]]
