"""The one error type of the test API server: a failure answered as a Kubernetes `Status` object."""

from __future__ import annotations

import aiohttp.web


class ApiError(Exception):
    """An error answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.retry_after = retry_after

    def response(self) -> aiohttp.web.Response:
        """The JSON `Status` response of this error."""
        body = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.retry_after is None:
            return aiohttp.web.json_response(body, status=self.code)
        # The new style (a header) and the old one (details), as API Priority and Fairness sends both.
        body["details"] = {"retryAfterSeconds": self.retry_after}
        headers = {"Retry-After": str(self.retry_after)}
        return aiohttp.web.json_response(body, status=self.code, headers=headers)
