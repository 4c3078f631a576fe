"""Serving tiles: versions, ETag and 304, the cache, and rendering within the pool's means.

One :class:`TileServer` per app, built in the lifespan (``app.state.tiles``) with its
:class:`~service.tile_cache.TileCache`, the :class:`~service.tile_cache.SharedTileCache` in
Redis when ``TWIN_REDIS_URL`` is set, and :class:`~service.tile_versions.TableVersions`.

Every tile has an ``ETag`` made from the versions of the layer's tables (``layer.table`` and
``layer.depends_on``), the tile and the canonical query, so it changes when the data does;
``If-None-Match`` gets ``304``. Tiles are kept in the caches keyed by the same versions.
A versioned URL names the versions it was handed out for: while they are current its tile is
``immutable`` (any HTTP cache keeps it); otherwise it gets the current tile, cached briefly.
``Cache-Control: no-cache`` lets clients keep tiles and revalidate them with a cheap ``304``.
Tiles render on the event loop over a small pool of asynchronous psycopg connections opened in
the lifespan (no thread hop, no SQLAlchemy layer per tile: the uncached path was bound by
Python more than by PostgreSQL); a burst of misses queues for the pool's connections instead
of opening new backends.
A tile that met more features than its limit says so in its ``Tile-Truncated`` header.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import NamedTuple

import psycopg
from fastapi import Response
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from geo import tiles
from geo.database import CONNECT_TIMEOUT_S
from geo.errors import DatabaseUnavailable
from geo.i18n import _
from geo.layers import Layer
from geo.replicas import ReadRouting
from service.changes import LayerChanges, conninfo_of
from service.settings import ServiceSettings
from service.tile_cache import SharedTileCache, TileCache
from service.tile_versions import TableVersions, VersionPoll

MVT = "application/vnd.mapbox-vector-tile"
# Clients keep tiles and ask again with If-None-Match each time (cheap 304s), so an alert
# or a new feature shows on the next look rather than after an expiry.
CACHE_CONTROL_OPEN = "public, no-cache"
CACHE_CONTROL_KEYED = "private, no-cache"
# A versioned URL (/tiles/{layer}/{version}/...) names one state of the layer: while it is the
# current one its tile never changes, so any HTTP cache (nginx's proxy_cache, a CDN, the
# browser) keeps it. A change makes new URLs; nothing is purged.
CACHE_CONTROL_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_CONTROL_IMMUTABLE_KEYED = "private, max-age=31536000, immutable"
# A versioned URL that is not the current version (a TileJSON fetched before a change) gets the
# current tile, kept only briefly: a map that loaded the old TileJSON still shows today's data,
# and loads the new URLs with its next TileJSON.
STALE_VERSION_MAX_AGE_S = 30
# A URL naming versions newer than this node knows makes it read them, at most this often.
NEWER_VERSION_READ_S = 0.05
CACHE_CONTROL_STALE_VERSION = f"public, max-age={STALE_VERSION_MAX_AGE_S}"
CACHE_CONTROL_STALE_VERSION_KEYED = f"private, max-age={STALE_VERSION_MAX_AGE_S}"
TRUNCATED_HEADER = "Tile-Truncated"
_QUERY_MEMO_MAX = 1024  # distinct (layer, query string) pairs remembered per process
_MAX_BOUNDS_ENTRIES = 256
# Connections that render tiles, per process: on 2 cores more only queue inside PostgreSQL.
RENDER_CONNECTIONS = 4


class CachedTile(NamedTuple):
    """A tile as the cache keeps it."""

    etag: str
    body: bytes
    truncated: str | None  # the Tile-Truncated header's value, when the tile was cut


def truncation_note(tile: tiles.RenderedTile) -> str | None:
    """The ``Tile-Truncated`` header of a cut tile: what it kept of what met it.

    Examples
    --------
    >>> truncation_note(tiles.RenderedTile(b"", matched=59823, kept=10000))
    'kept=10000; matched=59823'
    >>> truncation_note(tiles.RenderedTile(b"", matched=5, kept=5)) is None
    True
    """
    return f"kept={tile.kept}; matched={tile.matched}" if tile.truncated else None


def version_text(versions: tuple[int, ...]) -> str:
    """The path segment of a versioned tile URL: the versions of the layer's tables.

    >>> version_text((41, 3))
    'v41-3'
    """
    return "v" + "-".join(str(v) for v in versions)


def parse_version(text: str) -> tuple[int, ...] | None:
    """The versions a path segment names, or ``None`` when it is not one.

    >>> parse_version("v41-3")
    (41, 3)
    >>> parse_version("v41-x") is None
    True
    """
    parts = text[1:].split("-") if text.startswith("v") else []
    if not parts or len(parts) > 16 or not all(p.isascii() and p.isdigit() and len(p) <= 18
                                               for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


class TileServer:
    """The tiles of one app: versions, cache, rendering, and what the fast path remembers."""

    def __init__(self, engine: Engine, settings: ServiceSettings,
                 changes: LayerChanges | None, reads: ReadRouting | None = None) -> None:
        self.engine = engine
        # Streaming replicas (geo/replicas.py): a pool each; a tile renders on one that is in
        # rotation and has the changes this node knows of, else on the primary.
        self.reads = reads
        self._replica_pools = {
            replica.name: AsyncConnectionPool(
                replica.conninfo, min_size=1, max_size=RENDER_CONNECTIONS, open=False,
                timeout=CONNECT_TIMEOUT_S, name=f"twin-tiles-{n}",
                kwargs={"autocommit": True, "application_name": "twin-tiles",
                        "connect_timeout": CONNECT_TIMEOUT_S})
            for n, replica in enumerate(reads.replicas if reads is not None else [])}
        self.open_read = settings.open_read
        megabytes = settings.tile_cache_mb
        self.cache = TileCache(megabytes * 1024 * 1024) if megabytes > 0 else None
        self.versions = TableVersions(changes, VersionPoll(engine))
        # Behind the process's own cache, Redis shared by every node when one is set.
        self.shared = (SharedTileCache(settings.redis_url, f"twin:{engine.url.database}")
                       if settings.redis_url else None)
        self._pool = AsyncConnectionPool(
            conninfo_of(engine.url), min_size=RENDER_CONNECTIONS, max_size=RENDER_CONNECTIONS,
            open=False, timeout=CONNECT_TIMEOUT_S, name="twin-tiles",
            kwargs={"autocommit": True, "application_name": "twin-tiles",
                    "connect_timeout": CONNECT_TIMEOUT_S})
        self._queries: dict[tuple, tiles.TileRequest] = {}
        self._bounds: dict[tuple, tuple[float, float, float, float] | None] = {}
        self._bounds_lock = threading.Lock()

    async def open(self) -> None:
        """Open the render connections (in the lifespan; they come up in the background)."""
        await self._pool.open(wait=False)
        for pool in self._replica_pools.values():
            await pool.open(wait=False)

    async def close(self) -> None:
        """Close the render connections."""
        await self._pool.close()
        for pool in self._replica_pools.values():
            await pool.close()
        if self.shared is not None:
            await self.shared.close()

    # -- the fast path's memory of validated queries ----------------------------------------

    def remember(self, layer_id: str, query_string: bytes, tile: tiles.TileRequest) -> None:
        """Note that this layer and query string validated to ``tile`` (any z/x/y)."""
        if len(self._queries) >= _QUERY_MEMO_MAX:
            self._queries.clear()
        self._queries[(layer_id, query_string)] = tile

    def recall(self, layer_id: str | None, query_string: bytes) -> tiles.TileRequest | None:
        """The tile request a layer and query string validated to before, if any."""
        return self._queries.get((layer_id, query_string))

    # -- serving ------------------------------------------------------------------------------

    async def serve(self, tile: tiles.TileRequest, if_none_match: str | None,
                    version: tuple[int, ...] | None = None) -> Response:
        """The tile's response: 304, from a cache, or rendered (then cached).

        ``version`` is the one named by a versioned URL: the current one is answered as
        immutable; another gets the current tile with a short ``max-age``.
        """
        versions = await self.versions.of(tile.layer)
        if version is not None and version != versions and any(
                v > k for v, k in zip(version, versions, strict=False)):
            # Made by a node that heard of a change before this one: read the versions now.
            await self.versions.poll.fresh(NEWER_VERSION_READ_S)
            versions = await self.versions.of(tile.layer)
        etag = tile.etag(versions)
        if version is None:
            cache_control = CACHE_CONTROL_OPEN if self.open_read else CACHE_CONTROL_KEYED
        elif version == versions:
            cache_control = (CACHE_CONTROL_IMMUTABLE if self.open_read
                             else CACHE_CONTROL_IMMUTABLE_KEYED)
        else:
            cache_control = (CACHE_CONTROL_STALE_VERSION if self.open_read
                             else CACHE_CONTROL_STALE_VERSION_KEYED)
        headers = {"ETag": etag, "Cache-Control": cache_control}
        if _matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        key = f"{tile.z}/{tile.x}/{tile.y}|{tile.query_key()}"
        cache = self.cache
        entry = cache.get(tile.layer_id, versions, key) if cache is not None else None
        if entry is None:
            entry = await self._shared_or_rendered(tile, etag)
            if cache is not None:
                cache.put(tile.layer_id, versions, key, entry)
        if entry[2] is not None:
            headers[TRUNCATED_HEADER] = entry[2]
        if not entry[1]:
            return Response(status_code=204, headers=headers)
        return Response(entry[1], media_type=MVT, headers=headers)

    async def _shared_or_rendered(self, tile: tiles.TileRequest, etag: str) -> CachedTile:
        shared = self.shared
        if shared is not None:
            found = await shared.get(tile.layer_id, etag)
            if found is not None:
                return CachedTile(etag, found[1], found[0])
        rendered = await self._render(tile)
        entry = CachedTile(etag, rendered.body, truncation_note(rendered))
        if shared is not None:
            await shared.put(tile.layer_id, etag, entry.truncated, entry.body)
        return entry

    async def _render(self, tile: tiles.TileRequest) -> tiles.RenderedTile:
        away = DatabaseUnavailable(_("The database is not reachable; try again shortly."))
        try:
            return await self._render_once(tile)
        except PoolTimeout:
            raise away from None
        except psycopg.OperationalError:
            pass  # a connection broken since its last use (a restarted server): the pool
            # drops it; try once more on another, and a server still away is a 503
        try:
            return await self._render_once(tile)
        except psycopg.OperationalError:
            raise away from None

    async def _render_once(self, tile: tiles.TileRequest) -> tiles.RenderedTile:
        replica = self.reads.pick() if self.reads is not None else None
        if replica is not None:
            try:
                async with self._replica_pools[replica.name].connection() as conn:
                    return await tiles.render_tile_async(conn, tile)
            except (PoolTimeout, psycopg.OperationalError) as error:
                # A replica lost between two checks: this tile, and others, from the primary.
                assert self.reads is not None
                self.reads.take_out(replica, f"a tile failed on it: {type(error).__name__}")
        async with self._pool.connection() as conn:
            return await tiles.render_tile_async(conn, tile)

    # -- extents --------------------------------------------------------------------------------

    async def bounds(self, layer: Layer, as_of: datetime | None
                     ) -> tuple[float, float, float, float] | None:
        """The layer's lon/lat extent, remembered per version of its tables."""
        versions = await self.versions.of(layer)
        key = (layer.id, versions, as_of.isoformat() if as_of else "now")
        with self._bounds_lock:
            if key in self._bounds:
                return self._bounds[key]
        found = await run_in_threadpool(self._layer_bounds, layer, as_of)
        with self._bounds_lock:
            if len(self._bounds) >= _MAX_BOUNDS_ENTRIES:
                self._bounds.clear()
            self._bounds[key] = found
        return found

    def _layer_bounds(self, layer: Layer, as_of: datetime | None
                      ) -> tuple[float, float, float, float] | None:
        with self.engine.connect() as conn:
            return tiles.layer_bounds(conn, layer, as_of)
