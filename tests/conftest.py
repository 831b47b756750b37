"""Shared fixtures: paths to the bundled data and tiny randomly initialised models."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
UCM_ANNOTATIONS = DATA_DIR / "ucm_captions" / "annotations.json"
DEFAULT_CHECKPOINT = REPO_ROOT / "model" / "pretrained" / "default"


@pytest.fixture(autouse=True)
def _quiet_third_party_logs():
    logging.getLogger("transformers").setLevel(logging.ERROR)


@pytest.fixture
def requires_default_model():
    if not (DEFAULT_CHECKPOINT / "adapter_config.json").is_file():
        pytest.skip("the shipped default checkpoint is not present")
