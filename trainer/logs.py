"""Plain log lines for the Argo UI (no ANSI, no progress bars) and a quieter TensorFlow."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime


def quiet_tensorflow() -> None:
    """Turn TensorFlow's C++ log noise down; must run before `import tensorflow` to take effect."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # oneDNN's "custom operations are on" banner stays: TF_ENABLE_ONEDNN_OPTS=0 would silence it, but it
    # also turns oneDNN's CPU kernels off, which made the demo's VQ-VAE steps 1.6-1.9x slower.


def log(message: str) -> None:
    """Print one timestamped line to stdout and flush it (pod logs are read while a run goes on)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} {message}", file=sys.stdout, flush=True)
