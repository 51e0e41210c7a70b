"""The tests' expression evaluator (tests/argo_expr.py) against the Go engines Argo itself uses.

The test builds tests/argo_engines/main.go with Debian's Go packages (`apt-get install golang-go
golang-github-antonmedv-expr-dev golang-github-knetic-govaluate-dev`; no module download) and feeds it
the template's real strings: the retry expression over a matrix of pod endings and the rendered `when`
conditions. Both must agree with the Python evaluator the other tests rely on. The test command
installs those packages where it runs as root (scripts/system-packages); elsewhere this module skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from argo_expr import evaluate, render, should_retry

from argomlops.config import MLOpsSpec
from argomlops.workflows.generate import template_dict
from argomlops.workflows.retry import PREEMPTION_EXPRESSION
from argomlops.workflows.run import run_parameters

GOCODE = Path("/usr/share/gocode")
SOURCE = Path(__file__).with_name("argo_engines") / "main.go"
PACKAGES = ("github.com/Knetic/govaluate", "github.com/antonmedv/expr")


class Engines:
    """A running argo_engines process: one JSON request in, one JSON answer out."""

    def __init__(self, binary: Path) -> None:
        self.process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def __call__(self, engine: str, expression: str, env: dict[str, Any] | None = None) -> Any:
        assert self.process.stdin and self.process.stdout
        request = {"engine": engine, "expression": expression, "env": env or {}}
        self.process.stdin.write(json.dumps(request) + "\n")
        answer = json.loads(self.process.stdout.readline())
        assert not answer.get("error"), f"{engine} refused {expression!r}: {answer['error']}"
        return answer["value"]

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    go = shutil.which("go")
    if go is None or not all((GOCODE / "src" / p).is_dir() for p in PACKAGES):
        pytest.skip("Go and Debian's expr/govaluate packages are not installed")
    work = tmp_path_factory.mktemp("go")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{work / 'gopath'}:{GOCODE}",
        "GOCACHE": str(work / "cache"),
        "GOFLAGS": "",
    }
    binary = work / "argo_engines"
    subprocess.run([go, "build", "-o", str(binary), str(SOURCE)], check=True, env=env, timeout=300)
    running = Engines(binary)
    yield running
    running.close()


ENDINGS = [
    *product(
        [None, 0, 1, 2, 137, 143],
        ["Failed", "Error"],
        [
            "",
            "Error (exit code 1)",
            "Pod was terminated in response to imminent node shutdown.",
            "pod deleted",
            "OOMKilled (exit code 137)",
            "The node was low on resource: memory.",
            "Preempted in order to admit critical pod",
        ],
    )
]


def test_retry_expression_agrees_with_expr(engines: Engines) -> None:
    for exit_code, status, message in ENDINGS:
        code = "-1" if exit_code is None else str(exit_code)
        env = {"lastRetry": {"exitCode": code, "status": status, "message": message, "duration": "0"}}
        expected = engines("expr", PREEMPTION_EXPRESSION, env)
        assert should_retry(PREEMPTION_EXPRESSION, exit_code, status, message) is expected, (exit_code, message)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"stages": ["vqvae"]}, {"stages": ["pixelcnn"]}, {"git": {"repo": "https://g/x", "command": ["make"]}}],
)
def test_when_conditions_agree_with_govaluate_and_expr(engines: Engines, overrides: dict[str, Any]) -> None:
    params = run_parameters(run_id="r", config_map="cm", spec=MLOpsSpec.model_validate(overrides))
    variables = {f"workflow.parameters.{k}": v for k, v in params.items()}
    (dag,) = [t for t in template_dict()["spec"]["templates"] if "dag" in t]
    for task in dag["dag"]["tasks"]:
        when = render(task["when"], variables)
        ours = evaluate(when, {})
        assert ours is engines("govaluate", when), when
        assert ours is engines("expr", when), when


@pytest.mark.parametrize(
    "expression",
    [
        "true || false && false",
        "!(1 == 1) or 'a' + 'b' == 'ab'",
        "'abc' contains 'b' and 'abc' startsWith 'a' and 'abc' endsWith 'c'",
        "1 == 2 ? 'yes' : 'no'",
        "a['b-c'] == 'd' && a.e == 'f'",
    ],
)
def test_evaluator_subset_agrees_with_expr(engines: Engines, expression: str) -> None:
    env = {"a": {"b-c": "d", "e": "f"}}
    assert evaluate(expression, env) == engines("expr", expression, env)
