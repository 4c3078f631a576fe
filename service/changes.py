"""Learn at once when a layer changes in the database, whichever process changed it.

Triggers bump ``layer_versions`` and send ``NOTIFY twin_layer_changed``; this listener keeps
each layer's version current for ETags and calls back so caches drop what is stale. After a
lost connection it re-reads every version, so no change goes unnoticed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL

log = logging.getLogger("twin.service.changes")
CHANNEL = "twin_layer_changed"


def conninfo_of(url: URL) -> str:
    """A libpq connection string for a SQLAlchemy URL (host may be a socket directory)."""
    params = {k: v for k, v in url.query.items() if isinstance(v, str)}
    return make_conninfo(
        "", host=params.pop("host", url.host), port=url.port, dbname=url.database,
        user=url.username, password=url.password, **params,
    )


class LayerChanges:
    """A thread that listens for layer changes and keeps their versions."""

    def __init__(self, url: URL) -> None:
        self.conninfo = conninfo_of(url)
        self.versions: dict[str, int] = {}
        self._callbacks: list[Callable[[str], None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twin-layer-changes", daemon=True)
        self.ready = threading.Event()

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(layer)`` whenever ``layer`` changes (or may have changed)."""
        self._callbacks.append(callback)

    def version(self, layer: str) -> int:
        """The layer's current version (0 if unknown)."""
        return self.versions.get(layer, 0)

    def start(self) -> None:
        """Start listening; wait briefly for the first versions."""
        self._thread.start()
        self.ready.wait(timeout=5)

    def stop(self) -> None:
        """Stop listening."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _changed(self, layer: str) -> None:
        for callback in self._callbacks:
            callback(layer)

    def _reload(self, conn: psycopg.Connection) -> dict[str, int]:
        return dict(conn.execute("SELECT layer, version FROM layer_versions").fetchall())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    fresh = self._reload(conn)
                    stale = [layer for layer, v in fresh.items() if self.versions.get(layer) != v]
                    self.versions = fresh
                    for layer in stale:
                        self._changed(layer)
                    self.ready.set()
                    while not self._stop.is_set():
                        # Collect first: the notifies generator holds the connection, so the
                        # versions can be read only once it has returned.
                        payloads = [n.payload for n in conn.notifies(timeout=1.0)]
                        if payloads:
                            self.versions = self._reload(conn)
                            for layer in dict.fromkeys(payloads):
                                self._changed(layer)
            except psycopg.Error as error:
                log.warning("listening for layer changes failed (%s); retrying",
                            str(error).strip().splitlines()[:1])
                self._stop.wait(2.0)
