"""A real gcp-storage-emulator process on 127.0.0.1, for tests that talk to gs:// without Google.

google-cloud-storage sends every request to the emulator when `STORAGE_EMULATOR_HOST` names it, so
the code under test runs unchanged; only the server at the other end is not Google's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

from executables import executable


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _executable() -> str:
    return executable("gcp-storage-emulator")


class GCSEmulator:
    """Start, wait for and stop one in-memory emulator; `endpoint` is its http://127.0.0.1:PORT URL."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> GCSEmulator:
        """Launch the emulator and return once it answers HTTP; raises RuntimeError if it never does."""
        command = [_executable(), "start", "--host", "127.0.0.1", "--port", str(self.port), "--in-memory", "-q"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = self._process.stdout.read().decode(errors="replace") if self._process.stdout else ""
                raise RuntimeError(f"gcp-storage-emulator exited with {self._process.returncode}: {output}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gcp-storage-emulator did not answer on {self.endpoint} within {timeout:.0f} s")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b?project=test", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        """Terminate the emulator (kill it if it lingers)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        if self._process.stdout:
            self._process.stdout.close()
        self._process = None
