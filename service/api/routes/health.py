"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.core.errors import Unavailable
from service.deps import StateDep
from service.schemas.errors import error_responses
from service.schemas.info import HealthResponse

router = APIRouter(tags=["health"])


# HEAD is accepted too, because load balancers and `curl -I` probe with it.
@router.api_route("/healthz", methods=["GET", "HEAD"], response_model=HealthResponse)
def get_health() -> HealthResponse:
    """Return 200 while the process serves HTTP."""
    return HealthResponse(status="ok")


@router.api_route("/readyz", methods=["GET", "HEAD"], response_model=HealthResponse,
                  responses=error_responses(503))
def get_readiness(state: StateDep) -> HealthResponse:
    """Return 200 once the encoder and a snapshot are loaded, else 503."""
    if not state.ready:
        raise Unavailable("no index snapshot is loaded", code="not_ready", retry_after_s=5)
    return HealthResponse(status="ready")


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def get_metrics(state: StateDep) -> Response:
    """Return the Prometheus metrics in the text exposition format."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
