"""`argomlops operator` as a process of its own, on the host or in the operator image.

Tests that start the operator as a process take its command from here, so the same test runs against
the image: `$ARGOMLOPS_OPERATOR_COMMAND`, when set, is the command (shell words) that stands for
`argomlops operator`, e.g. scripts/test-images sets

    podman run --rm --network=host --read-only ... -e KUBECONFIG -e 'ARGOMLOPS_*' IMAGE

(the image's entry point is `argomlops operator`; its options follow). Such a command must pass the
environment the test sets (KUBECONFIG, ARGOMLOPS_*) into the container, reach 127.0.0.1 of the host
(the test API server) and forward SIGTERM; unset, the operator is this environment's console script.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping
from typing import Any

from executables import executable

OPERATOR_COMMAND_ENV = "ARGOMLOPS_OPERATOR_COMMAND"


def in_image() -> bool:
    """Whether the operator runs through `$ARGOMLOPS_OPERATOR_COMMAND` (an image) rather than on the host."""
    return bool(os.environ.get(OPERATOR_COMMAND_ENV, "").strip())


def operator_command() -> list[str]:
    """The command that stands for `argomlops operator` (options follow it)."""
    custom = os.environ.get(OPERATOR_COMMAND_ENV, "").strip()
    return shlex.split(custom) if custom else [executable("argomlops"), "operator"]


def start_operator(args: list[str], env: Mapping[str, str], **popen: Any) -> subprocess.Popen[str]:
    """Start `argomlops operator ARGS` with this environment, its output (both streams) on a text pipe."""
    return subprocess.Popen(
        [*operator_command(), *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )
