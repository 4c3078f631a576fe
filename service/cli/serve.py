"""``twin serve`` (the HTTP service, with a job worker inside by default) and ``twin worker``."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from geo.errors import TwinError
from geo.i18n import _
from service.cli.common import (
    console,
    database_settings,
    embedded_cluster,
    err_console,
    fail,
    open_engine,
)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    job_worker: Annotated[bool, typer.Option(
        "--worker/--no-worker", help="Run a job worker in the service (rules on new readings, "
        "scheduled refresh, scoring, training); --no-worker when `twin worker` runs "
        "elsewhere.")] = True,
) -> None:
    """Serve tiles, OGC API Features, alerts, exports and sensor intake over HTTP."""
    import uvicorn

    from geo.replicas import parse_replica_urls

    settings = database_settings()
    try:
        parse_replica_urls(settings.replica_urls)  # a mistaken URL is said before serving
        open_engine(settings)  # start and migrate before any worker needs the database
    except TwinError as error:
        raise fail(error) from None
    # uvicorn's workers are new processes that import the app factory by name
    # (service.asgi:create), which reads its settings from TWIN_* variables: the environment
    # they inherit is the one way to hand them this command's choices. Both are set here, so
    # a URL given as --database-url, or the embedded cluster's, reaches them as well.
    os.environ["TWIN_DATABASE_URL"] = (
        settings.database_url
        or embedded_cluster(settings).url.render_as_string(hide_password=False))
    os.environ["TWIN_RUN_WORKER"] = "true" if job_worker else "false"
    console.print(_("Serving on {url} (API documentation at /docs).",
                    url=f"http://{host}:{port}"))
    from service.access_log import uvicorn_log_config

    # The log config redacts keys given in query strings.
    uvicorn.run("service.asgi:create", factory=True, host=host, port=port, workers=workers,
                log_level="info", log_config=uvicorn_log_config())


def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Jobs run at once.")] = 2,
) -> None:
    """Run background jobs until stopped: rules on new readings, refresh, scoring, training."""
    import asyncio
    import logging

    from service.jobs import run_worker

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("twin").setLevel(logging.INFO)
    try:
        engine = open_engine()
    except TwinError as error:
        raise fail(error) from None
    err_console.print(_("Running jobs; Ctrl-C stops after the current ones."))
    asyncio.run(run_worker(engine, concurrency=concurrency))
