#!/usr/bin/env bash
# Fuzz the service's OpenAPI schema with schemathesis against a real server on
# 127.0.0.1 and fail on any 5xx response.
#
# Usage: scripts/fuzz_api.sh [MAX_EXAMPLES_PER_OPERATION]   (default 250)
# With 11 operations, the default generates well over 1,000 cases.
# Needs the dev extras (schemathesis) installed in the active Python.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export HARMA_FUZZ_MAX_EXAMPLES="${1:-250}"
exec "$PYTHON" -m pytest -q -s -p no:cacheprovider tests/service/test_fuzz.py
