"""The current versions of the tables behind each layer, for tile ETags and cache keys.

Two sources, both built in the app's lifespan: the ``LayerChanges`` listener (instant, from
``NOTIFY``) and :class:`VersionPoll`, a read of ``layer_versions`` at most every
``POLL_INTERVAL_S`` (a safety net should the listener miss a change). Versions only grow, so
:class:`TableVersions` takes the larger of the two.

A writer reads its own writes: :class:`FreshAfterWrites` holds back the answer to a write
that succeeded until this process has read the versions again, so the tile its client asks
for next is the new one. Other clients, and other processes, learn of it from ``NOTIFY`` at
once, or from the poll within ``POLL_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from geo.layers import Layer, table_versions
from geo.replicas import PRIMARY_LSN
from service.changes import LayerChanges

# How stale the polled table versions may get when the change listener misses a change.
POLL_INTERVAL_S = 0.25


class VersionPoll:
    """Table versions read from ``layer_versions`` at most every ``interval_s``.

    A safety net beside ``app.state.changes``: versions only grow, so the tile key takes the
    larger of the listener's and this poll's, and stays right if the listener falls behind.
    Reads run in the thread pool, one at a time; other requests meanwhile use the last ones.
    """

    def __init__(self, engine: Engine, interval_s: float = POLL_INTERVAL_S) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.versions: dict[str, int] = {}
        # The primary's WAL position read just before the versions: with replicas, no tile of
        # these versions is drawn on one that has not replayed it (geo/replicas.py's floor).
        self.lsn = 0
        self._read_at = float("-inf")
        self._reading: asyncio.Future | None = None

    def _read(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            versions = table_versions(conn)
            # After the versions: at or past the commit of each (see service.changes).
            lsn = int(conn.execute(sa.text(PRIMARY_LSN)).scalar_one())
        self.lsn = max(self.lsn, lsn)  # set before the versions are
        return versions

    async def _refresh(self) -> None:
        try:
            self.versions = await run_in_threadpool(self._read)
            self._read_at = time.monotonic()
        finally:
            self._reading = None

    async def refresh_now(self) -> None:
        """Read the versions now, whatever their age (after this process wrote something)."""
        await self._refresh()

    async def fresh(self, max_age_s: float) -> None:
        """Read the versions unless they were read within ``max_age_s`` (a URL named newer ones).

        Concurrent callers share one read, so a flood of such URLs reads at most once per
        ``max_age_s``; a primary out of reach leaves the versions as they were.
        """
        if time.monotonic() - self._read_at < max_age_s:
            return
        reading = self._reading
        if reading is None:
            reading = self._reading = asyncio.ensure_future(self._refresh())
        try:
            await asyncio.shield(reading)
        except sa.exc.DBAPIError:
            pass  # answered with the versions known; the URL's tile is then not immutable

    async def current(self) -> dict[str, int]:
        """The versions, refreshed when older than the interval."""
        if time.monotonic() - self._read_at >= self.interval_s:
            reading = self._reading
            if reading is None:
                reading = self._reading = asyncio.ensure_future(self._refresh())
            if not self.versions:  # nothing to answer with yet: wait (errors surface here)
                await asyncio.shield(reading)
            elif reading.done() and not reading.cancelled():
                reading.exception()  # a failed background read is retried next time
        return self.versions


class TableVersions:
    """The versions of a layer's tables: the listener's and the poll's, whichever is newer."""

    def __init__(self, changes: LayerChanges | None, poll: VersionPoll) -> None:
        self.changes = changes
        self.poll = poll

    async def of(self, layer: Layer) -> tuple[int, ...]:
        """Current versions of the layer's tables (``layer.table`` then ``layer.depends_on``)."""
        polled = await self.poll.current()
        changes = self.changes
        return tuple(max(changes.version(table) if changes is not None else 0,
                         polled.get(table, 0))
                     for table in (layer.table, *layer.depends_on) if table is not None)


WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE"))


class FreshAfterWrites:
    """Plain ASGI: before a successful write's answer goes out, read the layer versions anew."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        """Pass the request on; hold a write's response start until the versions are read."""
        if scope["type"] != "http" or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return

        async def send_when_fresh(message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                tiles = getattr(scope["app"].state, "tiles", None)
                if tiles is not None:
                    try:
                        await tiles.versions.poll.refresh_now()
                    except Exception:  # the write stands; the poll catches up by itself
                        pass
            await send(message)

        await self.app(scope, receive, send_when_fresh)
