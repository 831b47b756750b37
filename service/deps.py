"""Dependency aliases injected into the route handlers."""

from __future__ import annotations

import hmac
from typing import Annotated, Optional

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.core.config import Settings
from service.core.errors import Forbidden, Unauthorized
from service.runtime import ServiceState

_bearer = HTTPBearer(auto_error=False, description="Admin token set by HARMA_ADMIN_TOKEN.")


# The dependencies are coroutines because FastAPI runs a plain function
# dependency in the thread pool, which costs every request a thread hand-off.
async def get_state(request: Request) -> ServiceState:
    return request.app.state.service


async def get_app_settings(request: Request) -> Settings:
    """Return the settings the app was created with (``create_app`` stores them in ``app.state``)."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StateDep = Annotated[ServiceState, Depends(get_state)]


async def require_admin(settings: SettingsDep,
                        credentials: Annotated[Optional[HTTPAuthorizationCredentials], Depends(_bearer)]) -> None:
    """Allow the request only with the configured bearer token.

    Raises 403 when no token is configured (admin disabled) and 401 when the
    token is missing or wrong. The comparison runs in constant time.
    """
    if settings.admin_token is None:
        raise Forbidden("admin endpoints are disabled because no admin token is configured; "
                        "set HARMA_ADMIN_TOKEN to enable them")
    if credentials is None:
        raise Unauthorized("missing admin token; send 'Authorization: Bearer <token>'")
    expected = settings.admin_token.get_secret_value().encode("utf-8")
    if not hmac.compare_digest(credentials.credentials.encode("utf-8"), expected):
        raise Unauthorized("invalid admin token")


AdminDep = Depends(require_admin)
