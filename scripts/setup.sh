#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its test tools.
# Used by demo.sh and test.sh; safe to run again, it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv"
    python3 -m venv .venv
fi
echo "Installing the project into .venv"
.venv/bin/pip install --quiet --upgrade pip
# torchvision must match torch exactly, so the pair is pinned together.
.venv/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/pip install --quiet -e '.[dev]'
