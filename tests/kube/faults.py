"""What the test API server does wrong on request: the failures a busy real API server answers with.

A `Faults` given to `KubeServer.misbehave` decides, request by request, from a seeded random source (a
failing test repeats with the same seed):

- `error_rate` of the requests on resource URLs are refused with 500 InternalError or 429
  TooManyRequests (half each; the 429 with a `Retry-After` header and `details.retryAfterSeconds`, as
  API Priority and Fairness sends it);
- `lost_rate` of the writes are carried out and then answered 500, as when the write reached etcd but
  the answer timed out: a client that retries must cope with its own earlier success (AlreadyExists, a
  stale resourceVersion);
- `conflict_rate` of the updates that carry a resourceVersion precondition (every PUT, a merge patch
  naming `metadata.resourceVersion`) are answered 409 Conflict, as when someone wrote in between. An
  update without a precondition never conflicts on a real server, so none is refused here;
- every watch stream is cut after a random `watch_lifetime` (seconds, low and high), its connection
  closed without a clean end, as a load balancer or an API server restart does.

Watches themselves are never refused: a client would reconnect at once, which `watch_lifetime` covers.
`counts` says what was done, by kind of fault, so a test can check it really misbehaved.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from kube.errors import ApiError

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Faults:
    """How often the server fails, and how; `verdict` decides one request."""

    error_rate: float = 0.0
    lost_rate: float = 0.0
    conflict_rate: float = 0.0
    watch_lifetime: tuple[float, float] | None = None
    retry_after: int = 1
    seed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def refusal(self, method: str, guarded: bool) -> ApiError | None:
        """The error a request is refused with before it is served, or None to serve it."""
        draw = self._random.random()
        if draw < self.error_rate / 2:
            self.counts["500"] += 1
            return ApiError(500, "InternalError", "Internal error occurred: injected by the test server")
        if draw < self.error_rate:
            self.counts["429"] += 1
            return ApiError(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
                retry_after=self.retry_after,
            )
        if guarded and method in ("PUT", "PATCH") and self._random.random() < self.conflict_rate:
            self.counts["409"] += 1
            return ApiError(409, "Conflict", "the object has been modified; please apply your changes to the latest")
        return None

    def loses_answer(self, method: str) -> bool:
        """Whether a write that was just carried out is answered 500 instead of its result."""
        if method in WRITES and self._random.random() < self.lost_rate:
            self.counts["lost"] += 1
            return True
        return False

    def watch_cut_after(self) -> float | None:
        """Seconds until a new watch stream is cut, or None to leave it to its timeout."""
        if self.watch_lifetime is None:
            return None
        low, high = self.watch_lifetime
        return self._random.uniform(low, high)
