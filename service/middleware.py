"""ASGI middleware: request ids, the access log, HTTP metrics and the body size limit."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Optional

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.logging import request_id_var
from service.core.metrics import ServiceMetrics

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("service.access")

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Multipart framing (boundaries, part headers, form fields) on top of the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class BodyTooLarge(HTTPException):
    """The request body passed the byte limit while it was being received.

    It is an ``HTTPException`` so that FastAPI's body parsing re-raises it
    instead of turning it into a generic 400.
    """

    def __init__(self, limit_bytes: int):
        super().__init__(413, f"request body exceeds the limit of {limit_bytes} bytes")


class RequestContextMiddleware:
    """Wraps each HTTP request with an id, a byte limit, one access-log line and metrics.

    An exception that escapes the app becomes a 500 envelope that carries only
    the request id; the traceback goes to the log.
    """

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics, max_body_bytes: int):
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        status = {"code": 500, "started": False}
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", request_id.encode())]
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                await self._send_error(send_with_id, 413, "payload_too_large",
                                       f"request body of {declared} bytes exceeds the limit of "
                                       f"{self.max_body_bytes} bytes", request_id)
                return
            await self.app(scope, self._limited(receive), send_with_id)
        except BodyTooLarge:
            if not status["started"]:
                await self._send_error(send_with_id, 413, "payload_too_large",
                                       f"request body exceeds the limit of {self.max_body_bytes} bytes", request_id)
        except Exception:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not status["started"]:
                await self._send_error(send_with_id, 500, "internal_error",
                                       "internal server error; quote the request id when reporting it", request_id)
        finally:
            self._record(scope, status["code"], time.perf_counter() - started)
            request_id_var.reset(token)

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        return receive_limited

    def _record(self, scope: Scope, status_code: int, elapsed_s: float) -> None:
        route = route_template(scope)
        method = scope.get("method", "")
        self.metrics.requests.labels(route=route, method=method, status=str(status_code)).inc()
        self.metrics.request_latency.labels(route=route, method=method).observe(elapsed_s)
        access_logger.info("%s %s %d %.1fms", method, scope.get("path", ""), status_code, elapsed_s * 1000.0)

    @staticmethod
    async def _send_error(send: Send, status_code: int, code: str, message: str, request_id: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message, "request_id": request_id}}).encode()
        await send({"type": "http.response.start", "status": status_code,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def route_template(scope: Scope) -> str:
    """Return the template of the route that handled the request, or ``unmatched``.

    The router stores the matched route in the request scope.
    """
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def _request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _CLIENT_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _content_length(scope: Scope) -> Optional[int]:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
