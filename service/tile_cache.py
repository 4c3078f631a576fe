"""The tile cache of one service process: an LRU bounded in bytes, keyed by table versions.

Built once in the app's lifespan (:class:`service.tile_server.TileServer`); ``tile_cache_mb``
of 0 means no cache at all. Entries are ``(etag, body, ...)`` tuples; the body's length
(plus a fixed overhead) is what counts against the budget.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

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

