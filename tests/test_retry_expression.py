"""The preemption retry expression, evaluated against the endings a training pod can have.

The expression string is the one in the built template; `should_retry` evaluates it with the small
expr evaluator (Argo's controller is not available here), so these tests check its logic, not its text.
"""

from __future__ import annotations

import pytest
from argo_expr import ExprError, evaluate, nest, render, should_retry

from argomlops.workflows.generate import template_dict
from argomlops.workflows.retry import PREEMPTION_EXPRESSION

SHUTDOWN = "Pod was terminated in response to imminent node shutdown."


def _template_expression() -> str:
    (train,) = [t for t in template_dict()["spec"]["templates"] if t["name"] == "train"]
    return str(train["retryStrategy"]["expression"])


@pytest.mark.parametrize(
    ("exit_code", "status", "message"),
    [
        (143, "Failed", "Error (exit code 143)"),  # the trainer checkpointed after SIGTERM
        (None, "Failed", SHUTDOWN),  # GKE spot preemption, no exit code recorded
        (137, "Failed", SHUTDOWN),  # killed after the grace period ran out
        (None, "Error", "pod deleted"),  # the VM vanished, or a drain deleted the pod
        (None, "Failed", "Preempted in order to admit critical pod"),
    ],
)
def test_preemptions_are_retried(exit_code: int | None, status: str, message: str) -> None:
    assert should_retry(_template_expression(), exit_code, status, message) is True


@pytest.mark.parametrize(
    ("exit_code", "status", "message"),
    [
        (1, "Failed", "Error (exit code 1)"),  # a bug
        (2, "Failed", "Error (exit code 2)"),  # bad config or input
        (2, "Failed", SHUTDOWN),  # invalid input stays invalid, whatever happened to the node
        (137, "Failed", "OOMKilled (exit code 137)"),
        (None, "Failed", "The node was low on resource: memory. Container main was using 14Gi, request is 8Gi."),
        (None, "Failed", "Pod was active on the node longer than the specified deadline"),
    ],
)
def test_code_errors_are_not_retried(exit_code: int | None, status: str, message: str) -> None:
    assert should_retry(_template_expression(), exit_code, status, message) is False


def test_template_uses_the_module_expression() -> None:
    assert _template_expression() == PREEMPTION_EXPRESSION


def test_other_expressions_evaluate_too() -> None:
    """The e2e stand-in may evaluate any expression of this subset, e.g. Argo's own example."""
    assert should_retry("asInt(lastRetry.exitCode) > 1", 2, "Failed", "") is True
    assert should_retry("asInt(lastRetry.exitCode) > 1", None, "Error", "") is False
    assert should_retry("lastRetry.status == 'Error'", None, "Error", "") is True


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("true || false && false", True),  # && binds tighter than ||
        ("!(1 == 1) or 'a' + 'b' == 'ab'", True),
        ("'vqvae,pixelcnn' =~ '(^|,)vqvae(,|$)'", True),
        ("'pixelcnn' =~ '(^|,)vqvae(,|$)'", False),
        ("'abc' contains 'b' and 'abc' startsWith 'a' and 'abc' endsWith 'c'", True),
        ("'x' in list", True),
        ("1 == 2 ? 'yes' : 'no'", "no"),
        ("a['b-c'] == 'd'", True),
    ],
)
def test_evaluator_subset(expression: str, expected: object) -> None:
    assert evaluate(expression, {"a": {"b-c": "d"}, "list": ["a", "x"]}) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",  # no Python: unknown function
        "lastRetry.exitCode > 1",  # a string compared with a number, as expr would refuse
        "lastRetry.nope == '1'",
        "lastRetry.exitCode == ",
        "1 * 2",
    ],
)
def test_evaluator_rejects_what_it_does_not_know(expression: str) -> None:
    with pytest.raises(ExprError):
        should_retry(expression, 1, "Failed", "")


def test_non_boolean_expression_is_an_error() -> None:
    with pytest.raises(ExprError, match="not a boolean"):
        should_retry("lastRetry.message", 1, "Failed", "x")


def test_render_substitutes_simple_and_expression_tags() -> None:
    variables = {"workflow.parameters.gpus": "0", "workflow.parameters.accelerator": "nvidia-tesla-t4"}
    text = "{{workflow.parameters.gpus}}/{{=workflow.parameters.gpus == '0' ? 'cpu' : workflow.parameters.accelerator}}"
    assert render(text, variables) == "0/cpu"
    with pytest.raises(ExprError, match="unknown variable"):
        render("{{workflow.parameters.nope}}", variables)
    assert nest({"workflow.parameters.a.b": "1"}) == {"workflow": {"parameters": {"a.b": "1"}}}
