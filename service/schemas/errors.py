"""The error envelope as documented in the OpenAPI schema."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str
    details: Optional[list[FieldError]] = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_responses(*status_codes: int) -> dict:
    """Return the ``responses`` argument of a route that documents these error statuses."""
    return {status: {"model": ErrorResponse} for status in status_codes}
