"""Liveness, readiness and Prometheus metrics."""

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from geo import store
from geo.database import ping
from geo.errors import DatabaseUnavailable
from geo.i18n import _
from service.deps import EngineDep

router = APIRouter(tags=["operations"])

# Kept by the MQTT watchers in the database (they are other processes); read at each scrape.
FEED_DROPPED = Gauge("twin_feed_dropped_messages",
                     "Sensor messages the MQTT broker reported dropping, over all recorded time",
                     ["broker"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict:
    """Answer while the process runs, whatever the database does."""
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable",
            responses={503: {"description": "The database is not reachable."}})
def readyz(request: Request, engine: EngineDep) -> dict:
    """Answer 200 when a query reaches the database, 503 with Retry-After otherwise.

    With read replicas, also say which are in rotation (a replica out of it does not make
    the node unready: its reads go to the others or the primary).
    """
    try:
        ping(engine)
    except sa.exc.DBAPIError:
        raise DatabaseUnavailable(
            _("The database is not reachable; try again shortly.")) from None
    reads = request.app.state.reads
    if reads.replicas:
        return {"status": "ready", "replicas": reads.status()}
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(engine: EngineDep) -> Response:
    """Request counts and latencies by route, and feed losses, in Prometheus' text format."""
    try:
        with engine.connect() as conn:
            for broker, dropped in store.feed_drops_by_broker(conn).items():
                FEED_DROPPED.labels(broker=broker).set(dropped)
    except sa.exc.DBAPIError:
        pass  # the request metrics are still worth answering with while the database is away
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
