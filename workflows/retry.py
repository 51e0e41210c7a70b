"""The preemption budget: which endings of a training pod Argo retries, and an evaluator for tests.

Argo's `retryPolicy: OnError` misses a GKE spot preemption: the node ends as Failed with "Pod was
terminated in response to imminent node shutdown" (argo-workflows issues #9880 and #2901), and
`OnFailure`/`Always` alone would also retry real bugs. So the template uses `retryPolicy: Always`
with an `expression` that accepts only endings caused by the node going away:

- exit code 143: the trainer caught SIGTERM, wrote a checkpoint and stopped (the retried pod resumes);
- "imminent node shutdown" / "Pod was terminated": the kubelet's graceful node shutdown on a spot VM;
- "pod deleted": the pod vanished under Argo (a spot VM gone before shutdown finished, a node drain
  or upgrade, pod garbage collection of a lost node);
- "preempted": the kubelet or scheduler evicted the pod to admit a more important one.

Not retried: exit 2 (bad config or input: the same input fails again) whatever the message says; any
other exit code unless the message shows the node went away (a bug); OOMKilled and "The node was low
on resource" evictions (node-pressure evictions pick the pod using more than it requested, which on a
one-pod GPU node is the trainer itself: a retry would hit the same wall).
"""

from __future__ import annotations

from argomlops.workflows.expr import ExprError, evaluate, nest

PREEMPTION_MESSAGE_PATTERN = "(?i)(imminent node shutdown|pod was terminated|pod deleted|preempted)"
"""Node messages that mean the node or the pod was taken away, not that the code failed."""

PREEMPTION_EXPRESSION = (
    "lastRetry.exitCode != '2' && "
    f"(lastRetry.exitCode == '143' || lastRetry.message matches '{PREEMPTION_MESSAGE_PATTERN}')"
)
"""The template's `retryStrategy.expression` (Argo expr; `lastRetry.exitCode` is a string there)."""

RETRY_POLICY = "Always"
"""The expression decides alone; `Always` lets Failed (preemption) and Error nodes reach it."""

BACKOFF_DURATION = "30s"
BACKOFF_FACTOR = 2
BACKOFF_CAP = "5m"
"""Wait 30 s, 1 m, 2 m, ... at most 5 m between attempts: time for the autoscaler to bring a new spot node."""


def should_retry(expression: str, exit_code: int | None, status: str, message: str) -> bool:
    """Whether Argo would retry a node that ended this way, by evaluating `expression` as Argo does.

    Args:
        expression: a `retryStrategy.expression`, e.g. `PREEMPTION_EXPRESSION`.
        exit_code: the main container's exit code, None when there is none (the pod vanished).
        status: the node phase, `Failed` or `Error`.
        message: the node's message, e.g. "Pod was terminated in response to imminent node shutdown.".

    Raises:
        ExprError: the expression is outside the subset `argomlops.workflows.expr` understands, or is
            not a boolean.
    """
    # Argo passes every lastRetry field as a string; "-1" stands for "no exit code".
    variables = {
        "lastRetry.exitCode": "-1" if exit_code is None else str(exit_code),
        "lastRetry.status": status,
        "lastRetry.message": message,
        "lastRetry.duration": "0",
    }
    result = evaluate(expression, nest(variables))
    if not isinstance(result, bool):
        raise ExprError(f"retry expression gave {result!r}, not a boolean")
    return result
