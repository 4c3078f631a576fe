"""Tile caches: one process's LRU bounded in bytes, and Redis shared by every node.

Both are built once in the app's lifespan (:class:`service.tile_server.TileServer`). The
process's own (:class:`TileCache`; ``tile_cache_mb`` of 0 means none) is keyed by table
versions; entries are ``(etag, body, ...)`` tuples whose body length (plus a fixed overhead)
counts against the budget. With ``TWIN_REDIS_URL`` set, :class:`SharedTileCache` sits behind
it: a tile drawn by one node is there for every other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

log = logging.getLogger("twin.service.tile_cache")

_ENTRY_OVERHEAD_BYTES = 300  # key, ETag and bookkeeping per cached tile, roughly


class TileCache:
    """An LRU of tiles bounded in bytes, shared by the threads of one process.

    Keys carry the versions of the tile's layer tables; when a newer version of a layer is
    seen, every entry of that layer made with older versions is dropped at once.

    Examples
    --------
    >>> cache = TileCache(max_bytes=10_000)
    >>> cache.put("streets", (1, 1), "k", ('"e"', b"tile"))
    >>> cache.get("streets", (1, 1), "k")
    ('"e"', b'tile')
    >>> cache.get("streets", (2, 1), "k") is None  # the data changed: the old tile is gone
    True
    >>> len(cache)
    0
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[Any, ...]] = OrderedDict()
        self._by_layer: dict[str, set[tuple]] = {}
        self._versions: dict[str, tuple[int, ...]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property

    def size_bytes(self) -> int:
        """Bytes held, counted as body plus a fixed overhead per entry."""
        return self._bytes

    def _see(self, layer: str, versions: tuple[int, ...]) -> bool:
        # Versions only grow; True when these are the newest known for the layer.
        known = self._versions.get(layer)
        if known == versions:
            return True
        if known is not None and any(v < k for v, k in zip(versions, known, strict=False)):
            return False  # a request that read the versions just before a change
        self._versions[layer] = versions
        for key in self._by_layer.pop(layer, set()):
            self._drop(key)
        return True

    def _drop(self, key: tuple) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1]) + _ENTRY_OVERHEAD_BYTES

    def get(self, layer: str, versions: tuple[int, ...], key: str) -> tuple[Any, ...] | None:
        """The cached (etag, body) of a tile, or ``None``."""
        full = (layer, versions, key)
        with self._lock:
            self._see(layer, versions)
            entry = self._entries.get(full)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(full)
            self.hits += 1
            return entry

    def put(self, layer: str, versions: tuple[int, ...], key: str,
            entry: tuple[Any, ...]) -> None:
        """Keep a tile, evicting the least recently used ones beyond the budget."""
        size = len(entry[1]) + _ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            return
        full = (layer, versions, key)
        with self._lock:
            if not self._see(layer, versions):
                return
            self._drop(full)
            self._entries[full] = entry
            self._by_layer.setdefault(layer, set()).add(full)
            self._bytes += size
            while self._bytes > self.max_bytes:
                old, old_entry = self._entries.popitem(last=False)
                self._by_layer.get(old[0], set()).discard(old)
                self._bytes -= len(old_entry[1]) + _ENTRY_OVERHEAD_BYTES



# -- the cache shared by every node -----------------------------------------------------------

# Old versions' tiles are never asked for again; Redis drops them after this (or sooner, by its
# own LRU under maxmemory): nothing is ever purged by hand.
SHARED_TTL_S = 24 * 3600
# After a failure, the shared cache is left alone this long: a Redis that is down costs one
# failed call per interval, not one per tile.
SHARED_RETRY_S = 2.0
# A Redis that answers slower than this is treated as down: rendering is the fallback.
SHARED_TIMEOUT_S = 0.5
SHARED_CONNECTIONS = 32  # per process


class SharedTileCache:
    """Tiles in Redis, shared by every node (``TWIN_REDIS_URL``), keyed by the tile's ETag.

    The ETag is made from the versions of the layer's tables, the tile and the query, so a
    change makes new keys and no entry is ever invalidated; old ones expire. A Redis that is
    down or slow is skipped (a miss): the tile is rendered, and the outage is logged once.
    Values are the ``Tile-Truncated`` note, a newline, and the tile's bytes.
    """

    def __init__(self, url: str, namespace: str) -> None:
        # Imported here: a single-process twin never needs the client.
        import redis.asyncio

        self.url = url
        self.namespace = namespace
        # A bounded pool: a burst of misses waits for a connection (as the render pool does)
        # instead of opening hundreds.
        self._redis = redis.asyncio.Redis.from_pool(redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=SHARED_CONNECTIONS, timeout=SHARED_TIMEOUT_S,
            socket_timeout=SHARED_TIMEOUT_S, socket_connect_timeout=SHARED_TIMEOUT_S))
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._away_until = float("-inf")
        self.away = False
        self.hits = self.misses = self.failures = 0

    def _key(self, layer: str, etag: str) -> str:
        return f"{self.namespace}:tile:{layer}:{etag.strip(chr(34))}"

    def _failed(self, error: BaseException) -> None:
        self.failures += 1
        self._away_until = time.monotonic() + SHARED_RETRY_S
        if not self.away:  # once per outage
            self.away = True
            log.warning("the shared tile cache %s is not answering (%s); tiles are rendered "
                        "until it is back", _safe_url(self.url), type(error).__name__)

    def _answered(self) -> None:
        if self.away:
            self.away = False
            log.warning("the shared tile cache %s answers again", _safe_url(self.url))

    def _usable(self) -> bool:
        return time.monotonic() >= self._away_until

    async def get(self, layer: str, etag: str) -> tuple[str | None, bytes] | None:
        """``(truncation note, body)`` of a tile, or ``None`` (absent, or Redis away)."""
        if not self._usable():
            return None
        try:
            value = await self._redis.get(self._key(layer, etag))
        except self._errors as error:
            self._failed(error)
            return None
        self._answered()
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        assert isinstance(value, bytes)  # no decode_responses: Redis gives bytes
        note, _, body = value.partition(b"\n")
        return (note.decode() or None), body

    async def put(self, layer: str, etag: str, note: str | None, body: bytes) -> None:
        """Keep a tile for every node (best effort: a failure only costs a later render)."""
        if not self._usable():
            return
        try:
            await self._redis.set(self._key(layer, etag), (note or "").encode() + b"\n" + body,
                                  ex=SHARED_TTL_S)
        except self._errors as error:
            self._failed(error)
            return
        self._answered()

    async def close(self) -> None:
        """Close the connections to Redis."""
        await self._redis.aclose()


def _safe_url(url: str) -> str:
    """The URL without its password, for logs.

    >>> _safe_url("redis://:secret@cache:6379/0")
    'redis://cache:6379/0'
    """
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rpartition("@")[2]
