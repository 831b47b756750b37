"""Build the FastAPI application.

``create_app`` builds a new app; nothing is loaded at import time. The encoder
and the snapshot are loaded in the lifespan, once per process. Run it with
``harma-serve`` or ``uvicorn --factory service.main:create_app``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Optional

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from service.api.routes import admin, health, images, info, search, web
from service.core.config import Settings, get_settings
from service.core.errors import install_error_handlers
from service.core.metrics import ServiceMetrics
from service.middleware import MULTIPART_OVERHEAD_BYTES, RequestContextMiddleware
from service.runtime import start_runtime, stop_runtime

logger = logging.getLogger(__name__)


def create_app(settings: Optional[Settings] = None) -> FastAPI:
    """Return a new app that serves with ``settings`` (the environment's when None)."""
    settings = settings or get_settings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("starting: model %s, snapshots in %s", settings.model, settings.snapshot_dir)
        app.state.service = await run_in_threadpool(start_runtime, settings, metrics)
        logger.info("ready to serve")
        try:
            yield
        finally:
            logger.info("stopping")
            await run_in_threadpool(stop_runtime, app.state.service)

    # FastAPIOffline serves the Swagger UI and ReDoc assets from its own
    # package, so /docs and /redoc work on machines without internet access.
    app = FastAPIOffline(
        title="HarMA remote-sensing retrieval",
        version="1.0.0",
        description="Text-to-scene and scene-to-caption search over an indexed image archive.",
        lifespan=lifespan,
    )
    # Stored on the app rather than set through dependency_overrides: FastAPI
    # rebuilds every dependency of every request while any override is set.
    app.state.settings = settings
    install_error_handlers(app)
    for module in (search, images, admin, info, health, web):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-ID"])
    app.add_middleware(RequestContextMiddleware, metrics=metrics,
                       max_body_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES)
    return app
