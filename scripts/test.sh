#!/usr/bin/env bash
# Set up .venv if needed and run the whole test suite.
# The browser test needs Debian's chromium; it is installed here when missing
# and apt-get is available (as root), and skipped otherwise.
# Extra arguments go to pytest, for example: scripts/test.sh tests/model -x
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "Installing Debian's chromium for the browser test"
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
exec .venv/bin/python -m pytest -q "$@"
