"""Running ``crm-bridge serve`` as a child process that can be killed outright."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx2 as httpx
import tomli_w

API_KEY = "bench-api-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def write_config(directory: Path, sections: dict[str, Any]) -> Path:
    """A config file in ``directory`` whose journal lives there too."""
    sections = {name: dict(values) for name, values in sections.items()}
    sections.setdefault("store", {}).setdefault("path", "journal.sqlite3")
    sections.setdefault("local", {}).setdefault("path", "local.sqlite3")
    path = directory / "bridge.toml"
    path.write_text(tomli_w.dumps(sections))
    return path


class BridgeProcess:
    """One ``serve`` at a time on a fixed port; its output appended to a log."""

    def __init__(
        self, config: Path, port: int, environ: dict[str, str], log: Path
    ) -> None:
        self.config = config
        self.url = f"http://127.0.0.1:{port}"
        self._environ = {**os.environ, "CRM_BRIDGE_API_KEYS": API_KEY, **environ}
        self._log_path = log
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until ``/health`` answers."""
        self._log = self._log_path.open("ab")
        command = [sys.executable, "-m", "bridge.cli", "serve", "--config"]
        self._process = subprocess.Popen(
            [*command, str(self.config)],
            env=self._environ,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the bridge exited: see {self._log_path}")
            try:
                answer = httpx.get(
                    f"{self.url}/health", headers={"X-API-Key": API_KEY}, timeout=1
                )
                if answer.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the bridge did not come up in time")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as in a crash."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self._close_log()

    def stop(self) -> None:
        """SIGTERM and wait: the graceful way."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
