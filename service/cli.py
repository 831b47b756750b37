"""``harma-serve``: run the service with uvicorn on the configured host and port."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from service.core.config import Settings, get_settings
from service.core.logging import configure_logging


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="harma-serve",
        description="Serve text and image search over the published index snapshot. "
                    "Every other setting comes from HARMA_* environment variables or .env.")
    parser.add_argument("--host", help="address to bind (overrides HARMA_HOST)")
    parser.add_argument("--port", type=int, help="TCP port to bind (overrides HARMA_PORT)")
    args = parser.parse_args(argv)

    import uvicorn

    from service.main import create_app

    settings: Settings = get_settings()
    updates = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    if updates:
        settings = settings.model_copy(update=updates)
    configure_logging(settings.log_level)
    # uvicorn's own access log is off because the service writes one line per request with its id.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                access_log=False, log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
