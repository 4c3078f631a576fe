"""Learn at once when a layer changes in the database, whichever process changed it.

Triggers bump ``layer_versions`` and send ``NOTIFY twin_layer_changed``; this listener keeps
each layer's version current: ETags and tile-cache keys carry it, so a change makes them stale
at once. After a lost connection it re-reads every version, so no change goes unnoticed.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from sqlalchemy.engine import URL

from geo.database import conninfo_of
from geo.replicas import PRIMARY_LSN

log = logging.getLogger("twin.service.changes")
CHANNEL = "twin_layer_changed"


class LayerChanges:
    """A thread that listens for layer changes and keeps their versions."""

    def __init__(self, url: URL) -> None:
        self.conninfo = conninfo_of(url)
        self.versions: dict[str, int] = {}
        # The primary's WAL position when the versions were last read: a replica that has
        # replayed it has every change they count (geo/replicas.py, the floor of reads).
        self.lsn = 0
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
        # The WAL position is read *after* the versions, so it is at or past the commit of
        # every version read (a commit landing between two reads in the other order would be
        # counted in the versions but not covered by the floor, and a replica without it could
        # draw a tile cached under its version); it is set before the versions are.
        versions: dict[str, int] = dict(
            conn.execute("SELECT layer, version FROM layer_versions").fetchall())
        self.lsn = int(conn.execute(PRIMARY_LSN).fetchone()[0])  # type: ignore[index]
        return versions

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
