"""Where a read goes: the primary, or one of its streaming replicas that is up and current.

With ``TWIN_REPLICA_URLS`` set (one or more PostgreSQL URLs of hot standbys of the primary,
separated by commas or spaces), :class:`ReadRouting` gives a *reader engine* whose pooled
connections go to the replicas in turn; reads that may be served a moment behind (OGC items,
exports, maps) use it, and the tile server asks :meth:`ReadRouting.pick` for a replica for each
tile it renders on its own asynchronous pools; everything else uses the primary engine as
before. Without replicas the reader engine is the primary engine itself: exactly the single
process of before.

A replica is in rotation while all of these hold, checked every ``TWIN_REPLICA_CHECK_S``:

- it answers, and is in recovery (a standby; a promoted one is another primary, not ours);
- its lag is at most ``TWIN_REPLICA_MAX_LAG_S``. The lag is measured with LSNs, not with
  ``pg_last_xact_replay_timestamp()``, which grows on an idle primary where nothing is behind:
  each check records the primary's ``pg_current_wal_lsn()``; a replica whose
  ``pg_last_wal_replay_lsn()`` has passed every recorded position is current, else its lag is
  the age of the oldest recorded position it has not replayed yet.

A read must also see every change the service already knows of, or a tile of layer version
N + 1 would be drawn from data of version N and cached under N + 1. The service learns of
changes from the primary's ``NOTIFY`` (``service/changes.py``), and with each it reads the
primary's WAL position: the *floor*. A replica connection is used only if the replica has
replayed up to the floor (checked on the connection itself when the last check is older);
otherwise the read goes to the primary. So a reader sees its own writes, and anyone's writes
the node has heard of, however far behind a replica is.

How connections move: the reader engine's pool makes connections through :meth:`_connect`,
which tries the replicas in rotation (round robin) and then the primary; a replica that refuses
is taken out until the next check says otherwise. At checkout a connection to a replica that
has left rotation or is below the floor is thrown away and made again (to another replica or
the primary); a connection to the primary is moved back to a replica once it is
``REBALANCE_S`` old and a replica is in rotation.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine

from geo.database import CONNECT_TIMEOUT_S, conninfo_of, describe, parse_database_url

LOGGER = logging.getLogger("twin.geo.replicas")

REBALANCE_S = 2.0  # a reader connection on the primary goes back to a replica after this
# How long a read waits for a replica to replay the latest change before going to the primary:
# a streaming replica is usually milliseconds behind.
REPLAY_WAIT_S = 0.1
REPLICA_CONNECT_TIMEOUT_S = 2  # a replica that does not answer in time is skipped
_SPLIT = re.compile(r"[\s,]+")

# The insert position: past every record already inserted, committed or not yet flushed
# (synchronous_commit = off), so a floor read after a commit covers it.
PRIMARY_LSN = "SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint"
REPLICA_STATE = ("SELECT pg_is_in_recovery(), "
                 "(coalesce(pg_last_wal_replay_lsn(), '0/0') - '0/0')::bigint")
REPLAYED = "SELECT (coalesce(pg_last_wal_replay_lsn(), '0/0') - '0/0')::bigint"


def parse_replica_urls(raw: str | None) -> list[URL]:
    """The replica URLs of ``TWIN_REPLICA_URLS``: separated by commas or white space.

    Raises
    ------
    InvalidInput
        When one of them is not a PostgreSQL URL (the message names which).
    """
    return [parse_database_url(part, setting="TWIN_REPLICA_URLS")
            for part in _SPLIT.split(raw or "") if part]


@dataclass
class Replica:
    """One standby and what the last check found."""

    url: URL
    name: str
    conninfo: str
    in_rotation: bool = False
    replayed: int = -1  # bytes of WAL replayed, as an LSN minus 0/0
    lag_s: float | None = None
    reason: str = "not checked yet"
    checked_at: float = 0.0
    monitor: psycopg.Connection | None = field(default=None, repr=False)


class ReadRouting:
    """The reader engine and the thread that keeps the replicas' rotation current.

    Parameters
    ----------
    primary : Engine
        The primary's engine (writes and read-your-writes go there).
    replicas : list of URL
        Hot standbys of that primary.
    max_lag_s, check_s : float
        Most lag of a replica in rotation; how often replicas are checked.
    floor : callable, optional
        The primary's WAL position (as ``geo.replicas.PRIMARY_LSN`` gives it) at the latest
        change the caller knows of; reads never go to a replica below it.
    """

    def __init__(self, primary: Engine, replicas: list[URL], *, max_lag_s: float = 5.0,
                 check_s: float = 0.5, floor: Callable[[], int] | None = None) -> None:
        self.primary = primary
        self.replicas = [Replica(url, describe(url), conninfo_of(url)) for url in replicas]
        self.max_lag_s = max_lag_s
        self.check_s = check_s
        self.floor = floor or (lambda: 0)
        self._primary_conninfo = conninfo_of(primary.url)
        self._history: deque[tuple[float, int]] = deque()  # (when, primary LSN), oldest first
        self._turn = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._primary_monitor: psycopg.Connection | None = None
        if self.replicas:
            self.engine = sa.create_engine(
                primary.url, creator=self._connect, pool_pre_ping=True, pool_size=8,
                max_overflow=2)
            event.listen(self.engine, "connect", self._on_connect)
            event.listen(self.engine, "checkout", self._on_checkout)
        else:
            self.engine = primary
        self._made: dict[int, Replica | None] = {}  # id(new connection) -> its target

    # -- lifetime -------------------------------------------------------------------------

    def start(self) -> None:
        """Check the replicas once, then keep checking them in a thread (if there are any)."""
        if not self.replicas:
            return
        self.check()
        self._thread = threading.Thread(target=self._run, name="twin-replicas", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop checking and close the reader engine's connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.engine is not self.primary:
            self.engine.dispose()
        for monitor in [r.monitor for r in self.replicas] + [self._primary_monitor]:
            if monitor is not None:
                monitor.close()

    def status(self) -> list[dict]:
        """Each replica: its name (no password), whether in rotation, lag and why not."""
        return [{"replica": r.name, "in_rotation": r.in_rotation,
                 "lag_s": None if r.lag_s is None else round(r.lag_s, 3),
                 "reason": r.reason} for r in self.replicas]

    def _run(self) -> None:
        while not self._stop.wait(self.check_s):
            self.check()

    # -- checks ---------------------------------------------------------------------------

    def check(self) -> None:
        """Measure each replica against the primary and put it in or out of rotation."""
        now = time.monotonic()
        try:
            if self._primary_monitor is None or self._primary_monitor.closed:
                self._primary_monitor = psycopg.connect(
                    self._primary_conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                    application_name="twin-replica-check")
            lsn = self._primary_monitor.execute(PRIMARY_LSN).fetchone()[0]  # type: ignore[index]
            self._history.append((now, int(lsn)))
        except psycopg.Error as error:
            # Without the primary nothing can be compared; the replicas keep their last state.
            LOGGER.warning("Cannot read the primary's WAL position (%s).", _first_line(error))
            self._primary_monitor = None
            return
        while len(self._history) > 1 and self._history[0][0] < now - 4 * self.max_lag_s:
            self._history.popleft()
        for replica in self.replicas:
            self._check_one(replica, now)

    def _check_one(self, replica: Replica, now: float) -> None:
        try:
            if replica.monitor is None or replica.monitor.closed:
                replica.monitor = psycopg.connect(
                    replica.conninfo, autocommit=True, connect_timeout=REPLICA_CONNECT_TIMEOUT_S,
                    application_name="twin-replica-check")
            recovering, replayed = replica.monitor.execute(REPLICA_STATE).fetchone()  # type: ignore[misc]
        except psycopg.Error as error:
            if replica.monitor is not None:
                replica.monitor.close()
            replica.monitor = None
            self._set(replica, False, f"unreachable: {_first_line(error)}", lag=None)
            return
        # Assigned, not raised: a replica made anew at the same address starts lower.
        replica.replayed = int(replayed) if recovering else -1
        replica.checked_at = now
        if not recovering:
            self._set(replica, False, "not a standby (promoted or misconfigured)", lag=None)
            return
        lag = self.lag_of(int(replayed), now)
        if lag > self.max_lag_s:
            self._set(replica, False, f"{lag:.1f} s behind (most {self.max_lag_s:g} s)", lag)
        else:
            self._set(replica, True, "current", lag)

    def lag_of(self, replayed: int, now: float) -> float:
        """Seconds since the primary first stood at a WAL position the replica lacks."""
        for when, lsn in self._history:
            if lsn > replayed:
                return now - when
        return 0.0

    def _set(self, replica: Replica, in_rotation: bool, reason: str, lag: float | None) -> None:
        if in_rotation != replica.in_rotation:
            if in_rotation:
                LOGGER.info("Replica %s is back in rotation.", replica.name)
            else:
                LOGGER.warning("Replica %s is out of rotation: %s; reads go to the others or "
                               "the primary.", replica.name, reason)
        replica.in_rotation, replica.reason, replica.lag_s = in_rotation, reason, lag

    # -- the reader engine's pool ---------------------------------------------------------

    def _rotation(self, floor: int) -> list[Replica]:
        current = [r for r in self.replicas if r.in_rotation and r.replayed >= floor]
        if not current:
            return []
        start = next(self._turn) % len(current)
        return current[start:] + current[:start]

    def pick(self) -> Replica | None:
        """A replica for one read on a pool of the caller's own (the tile server's), or None.

        In rotation and, at its last check, past the floor; None means: read the primary.
        """
        current = self._rotation(self.floor())
        return current[0] if current else None

    def take_out(self, replica: Replica, reason: str) -> None:
        """Out of rotation until the next check finds it well (a caller's read failed)."""
        self._set(replica, False, reason, None)

    def _connect(self) -> psycopg.Connection:
        """A new pooled connection: to a replica in rotation if one answers, else the primary."""
        for replica in self._rotation(self.floor()):
            try:
                conn = psycopg.connect(replica.conninfo, connect_timeout=REPLICA_CONNECT_TIMEOUT_S,
                                       application_name="twin-reader")
            except psycopg.OperationalError as error:
                self._set(replica, False, f"refused a connection: {_first_line(error)}", None)
                continue
            self._made[id(conn)] = replica
            return conn
        conn = psycopg.connect(self._primary_conninfo, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="twin-reader")
        self._made[id(conn)] = None
        return conn

    def _on_connect(self, dbapi_conn, record) -> None:
        record.info["target"] = self._made.pop(id(dbapi_conn), None)
        record.info["since"] = time.monotonic()

    def _on_checkout(self, dbapi_conn, record, proxy) -> None:
        target: Replica | None = record.info.get("target")
        if target is None:
            if (time.monotonic() - record.info.get("since", 0) > REBALANCE_S
                    and self._rotation(self.floor())):
                raise exc.DisconnectionError("a replica is back: move this reader there")
            return
        if not target.in_rotation:
            raise exc.DisconnectionError(f"replica {target.name} left rotation")
        floor = self.floor()
        if target.replayed >= floor:
            return
        # Behind the last change we know of as of the last check: ask this connection, and
        # give a replica that streams a moment (REPLAY_WAIT_S) to replay a change just made.
        deadline = time.monotonic() + REPLAY_WAIT_S
        while True:
            with dbapi_conn.cursor() as cursor:
                cursor.execute(REPLAYED)
                replayed = int(cursor.fetchone()[0])
            dbapi_conn.rollback()
            target.replayed = max(target.replayed, replayed)
            if replayed >= floor or time.monotonic() >= deadline:
                break
            time.sleep(0.005)
        if replayed < floor:
            raise exc.DisconnectionError(f"replica {target.name} has not replayed the latest "
                                         f"change yet")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
