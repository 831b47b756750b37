"""Service errors and the single JSON error envelope.

Every error response has the body
``{"error": {"code": str, "message": str, "request_id": str}}``; validation
errors add ``details`` with one entry per invalid field.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation_error", 429: "too_many_requests",
    500: "internal_error", 503: "unavailable",
}


class ServiceError(Exception):
    """An error with an HTTP status, a machine-readable code and a message for the client."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: Optional[str] = None, headers: Optional[dict[str, str]] = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class InvalidImage(ServiceError):
    status_code = 400
    code = "invalid_image"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidRequest(ServiceError):
    status_code = 422
    code = "validation_error"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="admin"'})


class Forbidden(ServiceError):
    status_code = 403
    code = "admin_disabled"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class Unavailable(ServiceError):
    """Not ready or overloaded; the client may retry after ``retry_after_s`` seconds."""

    status_code = 503
    code = "unavailable"

    def __init__(self, message: str, *, code: Optional[str] = None, retry_after_s: int = 1):
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after_s)})


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


def error_response(request: Request, status_code: int, code: str, message: str, *,
                   headers: Optional[dict[str, str]] = None, details: Optional[list] = None) -> JSONResponse:
    """Build the error envelope response."""
    body: dict[str, Any] = {"code": code, "message": message, "request_id": request_id_of(request)}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status_code, headers=headers)


async def _handle_service_error(request: Request, error: ServiceError) -> JSONResponse:
    return error_response(request, error.status_code, error.code, error.message, headers=error.headers)


async def _handle_http_exception(request: Request, error: StarletteHTTPException) -> JSONResponse:
    code = _STATUS_CODES.get(error.status_code, "http_error")
    message = error.detail if isinstance(error.detail, str) else str(error.detail)
    return error_response(request, error.status_code, code, message, headers=getattr(error, "headers", None))


def _describe_validation_error(entry: dict) -> dict:
    location = tuple(entry.get("loc", ()))
    kind = entry.get("type")
    if kind == "json_invalid":
        # FastAPI puts the character offset of the syntax error where a field name would be.
        reason = (entry.get("ctx") or {}).get("error", "syntax error")
        offset = f" at character {location[1]}" if len(location) > 1 else ""
        return {"field": "body", "message": f"the request body is not valid JSON ({reason}{offset})"}
    message = str(entry.get("msg", "invalid value"))
    if location == ("body",) and kind in ("model_attributes_type", "dict_type"):
        message += "; send a JSON object with Content-Type: application/json"
    return {"field": ".".join(str(part) for part in location), "message": message}


async def _handle_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    details = [_describe_validation_error(entry) for entry in error.errors()]
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in details[:5])
    return error_response(request, 422, "validation_error", f"invalid request: {summary}", details=details)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every known error into the envelope."""
    app.add_exception_handler(ServiceError, _handle_service_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
