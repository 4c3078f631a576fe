"""The FastAPI application: ``create_app`` opens the database in its lifespan and mounts routers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import Counter, Histogram
from sqlalchemy.engine import Engine

from civic.intake import load_groups
from geo.i18n import default_locale
from geo.replicas import ReadRouting, parse_replica_urls
from geo.settings import DatabaseSettings
from predict.triage import TriageModels
from service import limits
from service.changes import LayerChanges
from service.errors import install_error_handlers
from service.language import RequestLanguage
from service.routers import (
    alerts,
    council,
    docs,
    exports,
    health,
    intake,
    maps,
    ogc,
    open311,
    readings,
    report,
    tiles,
    webhooks,
    work,
)
from service.settings import ServiceSettings
from service.tile_server import TRUNCATED_HEADER, TileServer
from service.tile_versions import FreshAfterWrites

REQUESTS = Counter("twin_http_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram("twin_http_request_seconds", "HTTP request latency", ["route", "method"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


class MeasureRequests:
    """Count requests and time them by route template.

    Plain ASGI: Starlette's BaseHTTPMiddleware would wrap every response (every tile) in a
    stream of its own.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        """Pass the request on, noting its status and duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_and_note(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            LATENCY.labels(template, method).observe(time.perf_counter() - started)
            REQUESTS.labels(template, method, str(status[0])).inc()


def create_app(engine: Engine, settings: ServiceSettings | None = None) -> FastAPI:
    """Build the service on a migrated twin database.

    Parameters
    ----------
    engine : Engine
        The twin's database (``geo.database.connect``); the app does not own its creation,
        so the CLI, tests and benchmarks decide where the database is.
    settings : ServiceSettings, optional
        Read from ``TWIN_*`` environment variables when not given.
    """
    settings = settings or ServiceSettings()

    database = DatabaseSettings()
    replicas = parse_replica_urls(database.replica_urls)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        changes = LayerChanges(engine.url)
        app.state.changes = changes
        changes.start()
        # Reads that may lag go to replicas only once they have the changes heard of here.
        tile_server: TileServer | None = None  # made below, on the read routing

        def floor() -> int:
            # The WAL position of the newest versions the node knows, from either source.
            return max(changes.lsn, tile_server.versions.poll.lsn if tile_server else 0)

        reads = ReadRouting(engine, replicas, max_lag_s=database.replica_max_lag_s,
                            check_s=database.replica_check_s, floor=floor)
        reads.start()
        app.state.reads = reads
        # Tile state lives as long as the app: cache, versions, render connections.
        tile_server = app.state.tiles = TileServer(engine, settings, changes, reads)
        app.state.tile_cache = tile_server.cache
        # OGC API collections' extents, per layer and version of its tables (routers/ogc.py).
        app.state.ogc_extents = {}
        await app.state.tiles.open()
        worker = None
        if settings.run_worker:
            from service.jobs import start_in_background

            worker = start_in_background(engine)
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                with suppress(asyncio.CancelledError):
                    await worker
            await app.state.tiles.close()
            reads.stop()
            changes.stop()

    app = FastAPI(
        title="Neighbourhood Twin",
        summary="Streets, manholes, parking, compounds, damage, debris and alerts of a "
        "neighbourhood: vector tiles, OGC API Features, alerts, exports and sensor intake.",
        version="0.1.0",
        lifespan=lifespan,
        # /docs and /redoc come from routers.docs, on vendored assets instead of a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.settings = settings
    # The triage model in use: loaded from the registry on first use and once per version.
    app.state.triage = TriageModels(engine)
    app.state.chat_groups = load_groups()
    install_error_handlers(app, settings.retry_after_s)
    # Inside CORS, so that a 413 still carries the CORS headers a browser needs to read it.
    limits.install(app, settings)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"],
                           expose_headers=["ETag", TRUNCATED_HEADER])

    # Inside MeasureRequests, outside the routers and error handlers: everything that answers
    # a request speaks its language.
    app.add_middleware(FreshAfterWrites)
    app.add_middleware(RequestLanguage, default=default_locale())
    app.add_middleware(MeasureRequests)
    for module in (health, tiles, ogc, alerts, exports, readings, open311, maps, docs, work,
                   intake, council, webhooks):
        app.include_router(module.router)
    report_router, limiter = report.make_router(settings, engine.url.database or "twin")
    report.install_limits(app, limiter)
    app.include_router(report_router)
    return app
