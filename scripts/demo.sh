#!/usr/bin/env bash
# Set up the project on a fresh machine, index the bundled archive with the
# offline default model and serve the search page on 127.0.0.1.
#
# Usage: scripts/demo.sh          (PORT=8000 by default; Ctrl+C stops the server)
# Steps: create .venv if missing, install torch and the project, build or
# update the snapshot of data/ in var/snapshots, start the server, print the URL.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8000}"
SNAPSHOTS="var/snapshots"
ARCHIVE="data"

scripts/setup.sh

if [ -f "$SNAPSHOTS/CURRENT" ]; then
    echo "Updating the snapshot of $ARCHIVE in $SNAPSHOTS (unchanged images reuse their vectors)"
    .venv/bin/python -m index update --snapshots "$SNAPSHOTS" --model default --archive "$ARCHIVE" \
        || .venv/bin/python -m index build --snapshots "$SNAPSHOTS" --model default --archive "$ARCHIVE"
else
    echo "Building the snapshot of $ARCHIVE in $SNAPSHOTS with the default model"
    .venv/bin/python -m index build --snapshots "$SNAPSHOTS" --model default --archive "$ARCHIVE"
fi

export HARMA_MODEL=default HARMA_SNAPSHOT_DIR="$SNAPSHOTS" HARMA_ARCHIVE_DIR="$ARCHIVE"
.venv/bin/python -m service.cli --host 127.0.0.1 --port "$PORT" &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' INT TERM EXIT

URL="http://127.0.0.1:$PORT/"
.venv/bin/python - "$URL" "$SERVER_PID" <<'PY'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("the server exited during startup; see the log above")
    try:
        with urllib.request.urlopen(url + "readyz", timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit("the server did not become ready within 300 s")
PY
echo
echo "Search page: $URL   (API docs: ${URL}docs; Ctrl+C stops the server)"
wait "$SERVER_PID"
