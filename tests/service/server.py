"""A real uvicorn server in a subprocess, bound to 127.0.0.1 on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """Runs ``harma-serve`` (``python -m service.cli``) with the given ``HARMA_*`` settings."""

    def __init__(self, settings: dict[str, str], log_path: Path):
        self.settings = dict(settings)
        self.log_path = log_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "ServerProcess":
        env = {key: value for key, value in os.environ.items() if not key.startswith("HARMA_")}
        env.update({f"HARMA_{key.upper()}": value for key, value in self.settings.items()})
        env.update({"HARMA_HOST": "127.0.0.1", "HARMA_PORT": str(self.port), "HARMA_DEVICE": "cpu"})
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "service.cli"], cwd=REPO_ROOT, env=env,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_until_up()
        return self

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; log:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start within {STARTUP_TIMEOUT_S}s; log:\n{self.log()}")

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30.0, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """Kill the server without a clean shutdown, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.kill()
