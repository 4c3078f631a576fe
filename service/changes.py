"""Learn at once when a layer changes in the database, whichever process changed it.

Triggers bump ``layer_versions`` and send ``NOTIFY twin_layer_changed``; this listener keeps
each layer's version current: ETags and tile-cache keys carry it, so a change makes them stale
at once. After a lost connection it re-reads every version, so no change goes unnoticed.
"""

from __future__ import annotations

import logging
import threading

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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twin-layer-changes", daemon=True)
        self.ready = threading.Event()

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

    def _reload(self, conn: psycopg.Connection) -> dict[str, int]:
        return dict(conn.execute("SELECT layer, version FROM layer_versions").fetchall())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.versions = self._reload(conn)  # (again) after a lost connection
                    self.ready.set()
                    while not self._stop.is_set():
                        # Collect first: the notifies generator holds the connection, so the
                        # versions can be read only once it has returned.
                        if [n.payload for n in conn.notifies(timeout=1.0)]:
                            self.versions = self._reload(conn)
            except psycopg.Error as error:
                log.warning("listening for layer changes failed (%s); retrying",
                            str(error).strip().splitlines()[:1])
                self._stop.wait(2.0)
