"""API errors as the simulator returns them (spec §6.1).

`APIErrorResponse` is raised by the core (`Simulator.handle_messages`) and turned into an HTTP
response by the transport, with the body shape
`{"type": "error", "error": {"type": ..., "message": ...}, "request_id": "req_..."}`.
"""

from __future__ import annotations

from typing import Any

# HTTP status → the API's error type (spec §6.1).
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class APIErrorResponse(Exception):
    """An error the simulated API answers with (status, error type, message, extra headers)."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.error_type = error_type or ERROR_TYPES.get(status, "invalid_request_error")
        self.message = message
        self.headers = dict(headers or {})
        super().__init__(f"{status} {self.error_type}: {message}")

    def body(self, request_id: str) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {"type": self.error_type, "message": self.message},
            "request_id": request_id,
        }


def invalid(message: str) -> APIErrorResponse:
    return APIErrorResponse(400, message, "invalid_request_error")
