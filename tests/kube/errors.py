"""The one error type of the test API server: a failure answered as a Kubernetes `Status` object."""

from __future__ import annotations

import aiohttp.web


class ApiError(Exception):
    """An error answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

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
        return aiohttp.web.json_response(body, status=self.code)
