"""The preemption budget: which endings of a training pod Argo retries.

Argo's `retryPolicy: OnError` misses a GKE spot preemption: the node ends as Failed with "Pod was
terminated in response to imminent node shutdown" (argo-workflows issues #9880 and #2901), and
`OnFailure`/`Always` alone would also retry real bugs. So the template uses `retryPolicy: Always`
with an `expression` that accepts only endings caused by the node going away:

- exit code 143: the trainer caught SIGTERM, wrote a checkpoint and stopped (the retried pod resumes),
  or the bucket stayed unreachable past the trainer's storage retries (2 minutes by default): nothing
  half-written is pointed at, so the retried pod resumes from the newest complete checkpoint, after
  the backoff below gave the bucket time to come back (argomlops/errors.py);
- "imminent node shutdown" / "Pod was terminated": the kubelet's graceful node shutdown on a spot VM;
- "pod deleted": the pod vanished under Argo (a spot VM gone before shutdown finished, a node drain
  or upgrade, pod garbage collection of a lost node);
- "preempted": the kubelet or scheduler evicted the pod to admit a more important one.

Not retried: exit 2 (bad config or input: the same input fails again) whatever the message says; any
other exit code unless the message shows the node went away (a bug); OOMKilled and "The node was low
on resource" evictions (node-pressure evictions pick the pod using more than it requested, which on a
one-pod GPU node is the trainer itself: a retry would hit the same wall).

A Workflow stopped with `spec.shutdown: Stop` (the operator's budget stop) is never retried, whatever
its pods' exit codes: Argo skips the retry strategy while a Workflow shuts down.

Argo evaluates the expression; the operator only counts what Argo retried (workflow_summary.py). The
tests check the expression with an evaluator of their own (tests/argo_expr.py), cross-checked against
Argo's Go engines.
"""

from __future__ import annotations

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
