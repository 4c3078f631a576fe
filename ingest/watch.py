"""Follow a sensor feed over MQTT and load its readings in small batches, losing none.

``twin ingest watch mqtt://HOST:PORT/TOPIC`` subscribes with QoS 1 under a fixed client id
and a persistent session (MQTT 5, ``clean_start`` off, a session expiry), so the broker keeps
what arrives while the job is away. Messages are collected into batches (``batch_size``
messages or ``batch_seconds``, whichever comes first); each batch is validated by the same
rules as file ingest and written in one transaction that stages, upserts and updates the
job's ``ingest_runs`` row. Only after that transaction has committed are the batch's
messages acknowledged, so a message is either in the database or still with the broker:
a crash, a broker restart or a database outage delays readings but never drops them, and a
message delivered twice is an unchanged upsert.

Several watchers split one feed with ``group``: each subscribes to the MQTT 5 shared
subscription ``$share/<group>/<topic>`` and the broker hands each message to one member.
Each member must have a client id of its own and keeps a persistent session, because of what
mosquitto (2.0.11; its issues #1747 and #2662, and tests/ingest/test_watch_group.py) does
with a member that goes away: the messages it had received but not acknowledged stay in *its*
session, and so do the messages the broker goes on assigning to it round-robin while it is
away; none is given to the others. They are delivered when a watcher with the same client id
connects again (a supervisor restarting it: systemd, scripts/cluster.sh), and are lost only if
the session expires first (``SESSION_EXPIRY_S``) or its queue overflows
(``max_queued_messages``). Without a persistent
session they would be lost at once, hence no clean sessions here. A message delivered to the
killed member and to its restart is an unchanged upsert, so nothing is stored twice.

A message that cannot be read is rejected with a reason (in ``ingest_rejects`` and the log)
and acknowledged like any other, so a bad message is never retried forever.

What the broker itself drops (a queue over mosquitto's ``max_queued_messages`` while the job is
away or slow) never reaches the job, so the job reads the broker's ``$SYS`` counter of dropped
messages and reports every increase: in the log, in the run's record, in ``feed_drops`` (and so
in the service's ``/metrics``). The counter is the broker's, for all its clients: an increase
says readings may be missing, not which.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import paho.mqtt.client as mqtt
import pandas as pd
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from geo import store
from geo.errors import BrokerUnavailable, DatabaseUnavailable, InvalidInput, TwinError
from geo.i18n import N_, _
from ingest.fields import READING_FIELDS, READINGS
from ingest.mapping import identity_mapping
from ingest.validate import REJECT_COLUMNS, ReadingContext, validate_readings

LOGGER = logging.getLogger("twin.ingest.watch")

DEFAULT_PORT = 1883
DEFAULT_SOURCE = "mqtt"
CONNECT_TIMEOUT_S = 10.0  # to reach the broker, be accepted and subscribed at start
KEEPALIVE_S = 30
# How long the broker keeps the job's session (and the messages queued for it) while the job
# is not connected; the broker's own limits (mosquitto: max_queued_messages) also apply.
SESSION_EXPIRY_S = 7 * 24 * 3600
# Unacknowledged messages the broker may have out to the job at once (MQTT 5's largest).
# A burst beyond it waits in the broker's queue for the client, which brokers bound
# (mosquitto: max_queued_messages, 1000 by default) and then drop from; with MQTT 3.1.1 the
# broker's own in-flight limit applies instead (mosquitto: 20), hence MQTT 5.
RECEIVE_MAXIMUM = 65535
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
DB_RETRY_FIRST_S, DB_RETRY_MAX_S = 0.5, 30.0
POLL_S = 0.1  # how often the batching loop looks at the stop flag while waiting
LOGGED_REJECTS_PER_BATCH = 20
MESSAGE_FIELD = "message"
# Mosquitto's count of messages it dropped since it started, published every sys_interval.
DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"

# The keys of one reading in a message; "source" is optional and overrides the job's source.
READING_KEYS = (*(f.name for f in READING_FIELDS), "source")
REPORT_KEYS = ("asset_layer", "asset_external_id", "observed_at", "source")
_SHAPE_KEYS = frozenset((*READING_KEYS, "metrics"))
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*"
                   r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])$")


# -- the URL --------------------------------------------------------------------------------

@dataclass(frozen=True)
class MqttTarget:
    """Where to listen: a broker and a topic filter (which may hold ``+`` and ``#``)."""

    host: str
    port: int
    topic: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}/{self.topic}"


def parse_mqtt_url(url: str) -> MqttTarget:
    """Read ``mqtt://host[:port]/topic/with/levels`` (the port defaults to 1883).

    The topic is everything after the first slash, percent-decoded; ``#`` is part of it,
    not a URL fragment.

    Raises
    ------
    InvalidInput
        With one sentence saying what is wrong with the URL.

    Examples
    --------
    >>> parse_mqtt_url("mqtt://localhost/sensors/+/report")
    MqttTarget(host='localhost', port=1883, topic='sensors/+/report')
    """
    scheme, sep, rest = str(url).partition("://")
    if not sep or scheme.lower() != "mqtt":
        raise InvalidInput(_("'{url}' is not an MQTT URL; expected mqtt://HOST[:PORT]/TOPIC, "
                             "e.g. mqtt://localhost:1883/sensors/#.", url=url))
    authority, slash, topic = rest.partition("/")
    host, port_text = authority, ""
    if authority.startswith("["):  # an IPv6 literal: [::1]:1883
        end = authority.find("]")
        host, port_text = authority[:end + 1], authority[end + 1:].removeprefix(":")
    elif ":" in authority:
        host, _colon, port_text = authority.rpartition(":")
    if "@" in authority:
        # Said without the URL, which would put a password on the screen and in the logs.
        raise InvalidInput(_("The MQTT URL holds a user or password, which twin does not take; "
                             "give mqtt://HOST[:PORT]/TOPIC of a broker that lets the job in."))
    if not host or not _HOST.match(host):
        raise InvalidInput(_("'{url}' names no valid broker host; expected "
                             "mqtt://HOST[:PORT]/TOPIC, e.g. mqtt://localhost:1883/sensors/#.",
                             url=url))
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InvalidInput(_("'{url}' has an invalid port '{port}'; it must be a number from "
                                 "1 to 65535.", url=url, port=port_text))
        port = int(port_text)
    topic = unquote(topic)
    if not slash or not topic:
        raise InvalidInput(_("'{url}' names no topic to subscribe to; expected "
                             "mqtt://HOST[:PORT]/TOPIC, e.g. mqtt://localhost:1883/sensors/#.",
                             url=url))
    problem = topic_filter_problem(topic)
    if problem:
        raise InvalidInput(_(_INVALID_TOPIC_FILTER[problem], url=url))
    return MqttTarget(host=host.strip("[]"), port=port, topic=topic)


def shared_topic(group: str | None, topic: str) -> str:
    """The filter to subscribe to: ``$share/<group>/<topic>`` in a group, else ``topic``.

    Raises
    ------
    InvalidInput
        When the group's name cannot be a share name.

    Examples
    --------
    >>> shared_topic("intake", "sensors/#")
    '$share/intake/sensors/#'
    """
    if group is None:
        return topic
    if not group or any(c in group for c in "/+#\x00"):
        raise InvalidInput(_("The group name '{group}' is not usable: it must be non-empty and "
                             "hold no '/', '+', '#' or NUL.", group=group[:80]))
    return f"$share/{group}/{topic}"


_NUL, _LONG = "it contains a NUL character", "it is longer than 65,535 bytes"
_HASH, _PLUS = "'#' must be a whole level and the last one", "'+' must be a whole level"
# parse_mqtt_url's whole sentence for each of topic_filter_problem's answers.
_INVALID_TOPIC_FILTER = {
    _NUL: N_("'{url}' has an invalid topic filter: it contains a NUL character."),
    _LONG: N_("'{url}' has an invalid topic filter: it is longer than 65,535 bytes."),
    _HASH: N_("'{url}' has an invalid topic filter: '#' must be a whole level and the last one."),
    _PLUS: N_("'{url}' has an invalid topic filter: '+' must be a whole level."),
}


def topic_filter_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid MQTT topic filter, or None if it is one."""
    if "\x00" in topic:
        return _NUL
    if len(topic.encode("utf-8")) > 65535:
        return _LONG
    levels = topic.split("/")
    for position, level in enumerate(levels):
        if "#" in level and (level != "#" or position != len(levels) - 1):
            return _HASH
        if "+" in level and level != "+":
            return _PLUS
    return None


# -- messages -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """Why (part of) a message is not a reading: one line of the run's rejects."""

    field: str
    value: str
    reason: str


def readings_of_message(payload: bytes) -> list[dict | Problem]:
    """The readings a message holds, in order, each a dict of READING_KEYS, or a Problem.

    A message is one reading, a sensor report (several ``metrics`` at one time), or a JSON
    array of those. Values keep their JSON types (bools become 1 and 0, anything nested
    becomes its JSON text) so that validation judges them as it judges a file's cells.

    Examples
    --------
    >>> readings_of_message(b'{"asset_layer": "parking", "asset_external_id": "PK-1", '
    ...                     b'"observed_at": "2026-11-30T08:00:00+08:00", '
    ...                     b'"metrics": {"occupancy_pct": 40}}')[0]["value"]
    40
    >>> readings_of_message(b"hello")[0].reason
    'is not JSON (Expecting value at line 1, column 1)'
    """
    try:
        document = json.loads(payload)
    except json.JSONDecodeError as exc:
        return [Problem(MESSAGE_FIELD, _excerpt(payload),
                        f"is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})")]
    except (UnicodeDecodeError, RecursionError) as exc:
        return [Problem(MESSAGE_FIELD, _excerpt(payload), f"is not JSON ({type(exc).__name__})")]
    if isinstance(document, list):
        if not document:
            return [Problem(MESSAGE_FIELD, "[]", "is an empty array: it holds no readings")]
        items: list[dict | Problem] = []
        for element in document:
            items.extend(_readings_of_object(element))
        return items
    return _readings_of_object(document)


def _readings_of_object(document) -> list[dict | Problem]:
    shape = ("is not a reading or a sensor report (an object with asset_layer, "
             "asset_external_id, observed_at and metric + value or metrics)")
    if not isinstance(document, dict) or not _SHAPE_KEYS & document.keys():
        return [Problem(MESSAGE_FIELD, _excerpt(_json_text(document)), shape)]
    if "metrics" not in document:
        return [{key: _cell(document.get(key), key) for key in READING_KEYS}]
    metrics = document["metrics"]
    if "metric" in document or "value" in document:
        return [Problem("metrics", _excerpt(_json_text(metrics)),
                        "comes with a metric or value of its own: give either metric + value "
                        "or metrics, not both")]
    if not isinstance(metrics, dict):
        return [Problem("metrics", _excerpt(_json_text(metrics)),
                        "is not an object of metric names to values")]
    if not metrics:
        return [Problem("metrics", "{}", "is empty: the report holds no readings")]
    common = {key: _cell(document.get(key), key) for key in REPORT_KEYS}
    return [{**common, "metric": _cell(name, "metric"), "value": _cell(value, "value")}
            for name, value in metrics.items()]


def _cell(value, key: str):
    """A JSON value as a file reader would give it: None, text or a number."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value) if key == "value" else str(value).lower()
    if isinstance(value, int):
        # Past float range, pandas would fail on it; as text it is rejected as not a number.
        return value if abs(value) < 2**1023 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _clean_text(value)
    return _clean_text(_json_text(value))


def _clean_text(text: str) -> str:
    # PostgreSQL text holds neither NUL nor lone surrogates; either would fail the batch.
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _json_text(value) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


def _excerpt(data: bytes | str, limit: int = 200) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return _clean_text(text[:limit])


# -- the job --------------------------------------------------------------------------------

@dataclass
class WatchStats:
    """What a watch job has loaded so far (messages and readings of committed batches)."""

    messages: int = 0
    readings: int = 0
    readings_new: int = 0
    readings_unchanged: int = 0
    readings_updated: int = 0
    rejected: int = 0
    batches: int = 0
    broker_dropped: int = 0  # messages the broker reported dropping while this job ran
    run_id: int | None = None

    def as_dict(self) -> dict:
        """The stats as plain JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class _Delivery:
    """A message as received: acknowledged later, on the connection it came on."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    received: float = field(default_factory=time.monotonic)


def watch(
    engine: Engine,
    url: str,
    *,
    client_id: str = "twin-ingest",
    group: str | None = None,
    batch_size: int = 500,
    batch_seconds: float = 1.0,
    max_messages: int | None = None,
    idle_exit_seconds: float | None = None,
    on_batch: Callable[[WatchStats], None] | None = None,
    source: str = DEFAULT_SOURCE,
    stop: threading.Event | None = None,
) -> WatchStats:
    """Load the readings published on an MQTT topic until stopped.

    Parameters
    ----------
    engine : Engine
        A migrated twin database.
    url : str
        ``mqtt://HOST[:PORT]/TOPIC``; the topic may hold ``+`` and ``#``.
    client_id : str
        The job's MQTT client id. The broker keeps one session per id, so a job restarted
        under the same id receives what was published while it was away; two jobs running
        at once need different ids.
    group : str, optional
        Join the shared subscription ``$share/<group>/<topic>``: the watchers of one group
        split the feed, each message going to one of them. Each needs its own ``client_id``.
    batch_size : int
        Most messages per batch (one transaction, then one acknowledgement each).
    batch_seconds : float
        Longest wait, from a batch's first message, before the batch is loaded.
    max_messages : int, optional
        Stop after loading this many messages (the rest stay with the broker).
    idle_exit_seconds : float, optional
        Stop when no message has come for this long (counted from the end of the last
        batch, so a slow batch does not count as idleness).
    on_batch : callable, optional
        Called with the running totals after each batch has committed.
    source : str
        The source system's name for readings whose message gives none.
    stop : threading.Event, optional
        Set it to stop the job (as SIGINT or SIGTERM do when run in the main thread).

    Returns
    -------
    WatchStats
        What was loaded, with the job's ``ingest_runs`` id.

    Raises
    ------
    InvalidInput
        When the URL or an option is unusable; nothing is written.
    BrokerUnavailable
        When the broker cannot be reached, or refuses the job, within about 10 s at start.
    DatabaseUnavailable
        When the database cannot be reached at start.
    """
    target = parse_mqtt_url(url)
    target = replace(target, topic=shared_topic(group, target.topic))
    if batch_size < 1:
        raise InvalidInput(_("The batch size must be at least 1, not {value}.",
                             value=batch_size))
    if not batch_seconds > 0:
        raise InvalidInput(_("The batch time must be more than 0 s, not {value}.",
                             value=batch_seconds))
    if max_messages is not None and max_messages < 1:
        raise InvalidInput(_("max_messages must be at least 1, not {value}.",
                             value=max_messages))
    if idle_exit_seconds is not None and not idle_exit_seconds > 0:
        raise InvalidInput(_("The idle time must be more than 0 s, not {value}.",
                             value=idle_exit_seconds))
    job = _WatchJob(engine, target, url=url, client_id=client_id, batch_size=batch_size,
                    batch_seconds=batch_seconds, max_messages=max_messages,
                    idle_exit_seconds=idle_exit_seconds, on_batch=on_batch, source=source,
                    stop=stop or threading.Event())
    with _stop_on_signals(job):
        return job.run()


@contextmanager
def _stop_on_signals(job: _WatchJob) -> Iterator[None]:
    """Make SIGINT and SIGTERM stop the job cleanly; a second signal acts as it did before."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals; callers there pass ``stop``
        return
    previous: dict[int, Any] = {}  # signal number -> the handler it had

    def handler(signum, frame):
        name = signal.Signals(signum).name
        LOGGER.info("%s: finishing the current batch, then stopping (again to stop at once).",
                    name)
        job.request_stop(f"stopped by {name}")
        for number, before in previous.items():
            signal.signal(number, before)

    for number in (signal.SIGINT, signal.SIGTERM):
        before = signal.signal(number, handler)
        previous[number] = signal.SIG_DFL if before is None else before
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


def _is_connection_error(error: BaseException) -> bool:
    """Whether a database error means 'try again later' rather than 'this batch is bad'."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    # OperationalError covers lost connections, shutdowns, a full disk, deadlocks and
    # serialisation failures; COPY raises psycopg's own errors, unwrapped.
    return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError
                      | sa_exc.DisconnectionError | psycopg.OperationalError
                      | psycopg.InterfaceError)


def _reason(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


class _WatchJob:
    """One run of ``watch``: an MQTT client feeding a queue, and a loop loading batches."""

    def __init__(self, engine: Engine, target: MqttTarget, *, url: str, client_id: str,
                 batch_size: int, batch_seconds: float, max_messages: int | None,
                 idle_exit_seconds: float | None, on_batch, source: str,
                 stop: threading.Event) -> None:
        self.engine = engine
        self.target = target
        self.url = url
        self.client_id = client_id
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.max_messages = max_messages
        self.idle_exit_seconds = idle_exit_seconds
        self.on_batch = on_batch
        self.source = source
        self.stop = stop
        self.stop_reason = "stopped on request"
        self.stats = WatchStats()
        self.inbox: queue.Queue[_Delivery] = queue.Queue()
        self.conn: Connection | None = None
        # Each (re)connection to the broker is a new generation; a message may be acknowledged
        # only on the connection it came on (after a reconnection the broker sends it again).
        self.generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.refused: str | None = None  # why the broker refused the job (for the log)
        self.refused_subscription: str | None = None  # its reason code, when it was the topic
        self.closing = False
        self.unloaded = 0  # messages given up on at a stop while the database was away
        self.broker = f"{target.host}:{target.port}"
        self.drops_mid: int | None = None  # the subscription to the broker's drop counter
        self.drops_seen: int | None = None  # its latest value, set by the MQTT thread
        self.drops_known: int | None = None  # the value last recorded in feed_drops
        self.client = self._make_client()

    def request_stop(self, reason: str) -> None:
        """Stop after the current batch."""
        self.stop_reason = reason
        self.stop.set()

    # -- broker ----------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        client.connect_timeout = CONNECT_TIMEOUT_S / 2
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        return properties

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            self.connected.set()
            LOGGER.warning("The broker %s refused the connection: %s.", self.target,
                           reason_code)
            return
        self.generation += 1
        if self.connected.is_set():
            if flags.session_present:
                LOGGER.info("Reconnected to %s; the session and its queued messages were kept.",
                            self.target)
            else:
                LOGGER.warning("Reconnected to %s but the broker had lost the session: messages "
                               "published while disconnected may be missing.", self.target)
        self.connected.set()
        # Subscribing again on a kept session is harmless; retained messages come only once.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe(self.target.topic, options=options)
        self.drops_mid = client.subscribe(DROPPED_TOPIC, qos=0)[1]

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failures = [str(code) for code in reason_codes if code.is_failure]
        if mid == self.drops_mid:
            if failures:
                LOGGER.warning("The broker %s does not let the job read %s (%s): messages it "
                               "drops cannot be detected.", self.target, DROPPED_TOPIC,
                               failures[0])
            return
        if failures:
            self.refused = f"the subscription to '{self.target.topic}' was refused: {failures[0]}"
            self.refused_subscription = failures[0]
            LOGGER.warning("The broker %s refused %s.", self.target, self.refused)
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.generation += 1
        if not self.closing:
            LOGGER.warning("Lost the broker %s (%s); reconnecting. Messages not yet "
                           "acknowledged will come again.", self.target, reason_code)

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == DROPPED_TOPIC:
            text = message.payload.decode("ascii", "replace").strip()
            if text.isdigit():
                self.drops_seen = int(text)
            return
        LOGGER.debug("Received message %d on %s (%d bytes).", message.mid, message.topic,
                     len(message.payload))
        self.inbox.put(_Delivery(self.generation, message.mid, message.qos, message.topic,
                                 message.payload))

    def _start_broker(self) -> None:
        where = f"{self.target.host}:{self.target.port}"
        try:
            self.client.connect(self.target.host, self.target.port, keepalive=KEEPALIVE_S,
                                clean_start=False, properties=self._connect_properties())
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise BrokerUnavailable(_("Cannot reach the MQTT broker at {where}: {reason}.",
                                      where=where, reason=reason)) from None
        self.client.loop_start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        for event in (self.connected, self.subscribed):
            if not event.wait(max(deadline - time.monotonic(), 0)) or self.refused:
                self._stop_broker()
                if self.refused_subscription is not None:
                    raise BrokerUnavailable(_(
                        "The MQTT broker at {where} refused the job '{client_id}': the "
                        "subscription to '{topic}' was refused: {reason}.", where=where,
                        client_id=self.client_id, topic=self.target.topic,
                        reason=self.refused_subscription))
                if self.refused:
                    raise BrokerUnavailable(_("The MQTT broker at {where} refused the job "
                                              "'{client_id}': {reason}.", where=where,
                                              client_id=self.client_id, reason=self.refused))
                raise BrokerUnavailable(_("The MQTT broker at {where} did not answer within "
                                          "{seconds} s.", where=where,
                                          seconds=format(CONNECT_TIMEOUT_S, "g")))

    def _stop_broker(self) -> None:
        self.closing = True
        # Acknowledgements queued before go out first: paho sends packets in order.
        self.client.disconnect()
        self.client.loop_stop()

    # -- database --------------------------------------------------------------------------

    def _connection(self) -> Connection:
        if self.conn is None:
            self.conn = self.engine.connect()
        return self.conn

    def _drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.invalidate()
                self.conn.close()
            except Exception:  # it is being thrown away already
                pass
            self.conn = None

    def _start_run(self) -> None:
        try:
            with self.engine.begin() as bookkeeping:
                store.mark_interrupted_runs(bookkeeping)
            conn = self._connection()
            # The run is tied to this connection's server process, held for the whole job,
            # so another load does not take the job for a dead one.
            pid = store.backend_pid(conn)
            conn.commit()
            with self.engine.begin() as bookkeeping:
                self.stats.run_id = store.start_run(
                    bookkeeping, layer=READINGS, source=self.source, path=self.url,
                    checksum_sha256="", mapping_path=None, pid=pid)
                self.drops_known = store.last_feed_drop_total(bookkeeping, self.broker)
        except sa_exc.DBAPIError as exc:
            self._drop_connection()
            raise DatabaseUnavailable(_("Cannot record the watch job in the database: {reason}",
                                        reason=_reason(exc))) from None

    def _record_end(self, status: str, message: str) -> None:
        """Best effort: the job is ending anyway, and a later load marks a lost run."""
        try:
            with self.engine.begin() as conn:
                self._finish_run(conn, self.stats, status=status, message=message)
        except Exception as exc:  # reported, not raised: the job is ending anyway
            LOGGER.error("Could not record the end of run %s (%s): %s", self.stats.run_id,
                         status, _reason(exc))

    def _finish_run(self, conn: Connection, stats: WatchStats, *, status: str,
                    message: str | None = None) -> None:
        # finish_run writes the totals so far; while running it is called with 'running'.
        if stats.run_id is None:  # the run was never recorded: nothing to finish
            return
        store.finish_run(conn, stats.run_id, status=status, rows_read=stats.readings,
                         counts=store.UpsertCounts(rows_new=stats.readings_new,
                                                   rows_updated=stats.readings_updated,
                                                   rows_unchanged=stats.readings_unchanged),
                         rows_rejected=stats.rejected, message=message,
                         pid=store.backend_pid(conn) if status == "running" else None)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> WatchStats:
        self._start_broker()
        try:
            self._start_run()
        except BaseException:
            self._stop_broker()
            raise
        LOGGER.info("Watching %s as client '%s' (run %d; batches of up to %d messages or %g s).",
                    self.target, self.client_id, self.stats.run_id, self.batch_size,
                    self.batch_seconds)
        try:
            self._loop()
        except BaseException as error:
            message = str(error) if isinstance(error, TwinError) else (
                f"{type(error).__name__}: {error}")
            self._stop_broker()
            self._record_end("failed", message)
            self._drop_connection()
            raise
        self._stop_broker()
        self._check_drops()
        left = self.inbox.qsize() + self.unloaded
        ending = f"{self.stop_reason}; {self.stats.messages} messages"
        if self.stats.broker_dropped:
            ending += (f"; the broker reported {self.stats.broker_dropped} messages dropped, "
                       f"so readings may be missing")
        if left:
            LOGGER.info("%d messages received but not loaded stay with the broker for the next "
                        "run.", left)
            ending += f", {left} more left with the broker"
        self._record_end("succeeded", ending)
        self._drop_connection()
        LOGGER.info("Stopped (%s): %d messages, %d readings: %d new, %d updated, %d unchanged, "
                    "%d rejected, in %d batches.", self.stop_reason, self.stats.messages,
                    self.stats.readings, self.stats.readings_new, self.stats.readings_updated,
                    self.stats.readings_unchanged, self.stats.rejected, self.stats.batches)
        return replace(self.stats)

    def _loop(self) -> None:
        busy_at = time.monotonic()  # when the job last finished work
        while not self.stop.is_set():
            limit = self.batch_size
            if self.max_messages is not None:
                limit = min(limit, self.max_messages - self.stats.messages)
                if limit <= 0:
                    self.request_stop(f"stopped after {self.max_messages} messages")
                    break
            batch = self._collect(limit, busy_at)
            if not batch:
                if (self.idle_exit_seconds is not None
                        and time.monotonic() - busy_at >= self.idle_exit_seconds):
                    self.request_stop(f"stopped after {self.idle_exit_seconds:g} s without "
                                      f"messages")
                continue
            self._load(batch)
            busy_at = time.monotonic()
            # A busy feed is when a broker drops: its counter is checked after every batch
            # too (a no-op while it has not changed), not only when the feed goes quiet.
            self._check_drops()

    def _check_drops(self) -> None:
        """Record a change of the broker's drop counter; warn when it says messages were lost."""
        seen = self.drops_seen
        if seen is None or seen == self.drops_known:
            return
        try:
            with self.engine.begin() as conn:
                new = store.record_feed_drops(conn, self.broker, total=seen,
                                              run_id=self.stats.run_id)
        except sa_exc.DBAPIError as error:
            LOGGER.warning("Could not record the broker's drop counter (%s); trying again "
                           "later.", _reason(error))
            return
        self.drops_known = seen
        if new:  # None: another watcher of the group recorded this change already
            self.stats.broker_dropped += new
            LOGGER.warning(
                "The broker %s reports %d more messages dropped (%d since it started): "
                "readings may be missing. A queue limit drops them (mosquitto's "
                "max_queued_messages); see docs/mosquitto.conf.", self.target, new, seen)

    def _collect(self, limit: int, busy_at: float) -> list[_Delivery]:
        """Up to ``limit`` current messages, waiting at most batch_seconds from the first.

        Behind a backlog the first message may be older than that; the batch then takes
        what is already waiting, up to ``limit``, without waiting for more. Returns early
        (maybe empty) when stopping, or empty when idle for idle_exit_seconds.
        """
        batch: list[_Delivery] = []
        deadline = math.inf
        while len(batch) < limit and not self.stop.is_set():
            now = time.monotonic()
            if not batch and self.idle_exit_seconds is not None and (
                    now - busy_at >= self.idle_exit_seconds):
                break
            try:
                if now < deadline:
                    delivery = self.inbox.get(timeout=min(POLL_S, deadline - now))
                else:
                    delivery = self.inbox.get_nowait()
            except queue.Empty:
                if now >= deadline:
                    break
                self._check_drops()  # a quiet feed is when the broker's counter is news
                continue
            if delivery.generation != self.generation:
                continue  # came on a lost connection: the broker sends it again
            batch.append(delivery)
            if len(batch) == 1:
                deadline = delivery.received + self.batch_seconds
        return batch

    def _load(self, batch: list[_Delivery]) -> None:
        """Write a batch, retrying while the database is away; then acknowledge it."""
        attempt = 0
        while True:
            current = [d for d in batch if d.generation == self.generation]
            if len(current) < len(batch):
                LOGGER.info("%d messages of the batch came on a lost connection; the broker "
                            "sends them again.", len(batch) - len(current))
                batch = current
            if not batch:
                return
            try:
                started = time.monotonic()
                stats, rejects, topics = self._write(batch)
                break
            except Exception as error:
                if not _is_connection_error(error):
                    raise
                self._drop_connection()
                attempt += 1
                delay = min(DB_RETRY_FIRST_S * 2 ** (attempt - 1), DB_RETRY_MAX_S)
                LOGGER.warning("Database unavailable (%s); %d messages stay unacknowledged; "
                               "retrying in %.1f s (attempt %d).", _reason(error), len(batch),
                               delay, attempt)
                if self.stop.wait(delay):
                    self.unloaded += len(batch)
                    return
        for delivery in batch:
            if delivery.generation == self.generation:
                self.client.ack(delivery.mid, delivery.qos)
        before, self.stats = self.stats, stats
        self._log_batch(before, rejects, topics, time.monotonic() - started)
        if self.on_batch is not None:
            self.on_batch(replace(self.stats))

    def _write(self, batch: list[_Delivery]) -> tuple[WatchStats, pd.DataFrame, dict[int, str]]:
        """One transaction: validate, stage, upsert, keep rejects, update the run's totals."""
        frame, problems, topics = self._frame(batch)
        conn = self._connection()
        with conn.begin():
            store.create_readings_stage(conn)
            store.create_rejects_stage(conn)
            rejects = [problems]
            accepted_rows = 0
            collapsed = 0
            if len(frame):
                context = ReadingContext(metrics=store.metric_ranges(conn),
                                         assets=store.asset_keys(conn))
                mapping = identity_mapping(list(frame.columns), READING_KEYS)
                checked = validate_readings(frame, mapping, context, source=self.source,
                                            now=datetime.now(UTC))
                accepted = checked.accepted
                # The very same reading twice in a batch (a device or broker repeating
                # itself) is one reading; the same key with another value is a conflict,
                # rejected below as file ingest rejects it.
                repeated = accepted.duplicated(
                    ["metric_id", "asset_id", "observed_at", "value", "source"])
                collapsed = int(repeated.sum())
                accepted = accepted[~repeated]
                accepted_rows = len(accepted)
                store.copy_frame(conn, "stage_readings",
                                 accepted[list(store.READING_STAGE_COLUMNS)])
                rejects.append(checked.rejects)
            if accepted_rows:
                duplicates = store.take_duplicate_readings(conn)
                rejects.append(pd.DataFrame({
                    "row_number": duplicates["row_number"], "field": "observed_at",
                    "value": "", "reason": "repeats the asset, metric and time of reading "
                    + duplicates["first_row"].astype(str) + " with another value",
                }))
            rejected = pd.concat([r for r in rejects if len(r)] or [problems],
                                 ignore_index=True)[REJECT_COLUMNS]
            rejected = rejected.sort_values("row_number", kind="stable")
            store.copy_frame(conn, "stage_rejects", rejected.assign(outcome="rejected"))
            counts = store.upsert_readings_from_stage(conn)
            assert self.stats.run_id is not None  # batches come only after the run is recorded
            store.save_rejects(conn, self.stats.run_id)
            stats = replace(
                self.stats,
                messages=self.stats.messages + len(batch),
                readings=self.stats.readings + len(frame) + len(problems),
                readings_new=self.stats.readings_new + counts.rows_new,
                readings_updated=self.stats.readings_updated + counts.rows_updated,
                readings_unchanged=(self.stats.readings_unchanged + counts.rows_unchanged
                                    + collapsed),
                rejected=self.stats.rejected + rejected["row_number"].nunique(),
                batches=self.stats.batches + 1,
            )
            self._finish_run(conn, stats, status="running")
        return stats, rejected, topics

    def _frame(self, batch: list[_Delivery]) -> tuple[pd.DataFrame, pd.DataFrame,
                                                      dict[int, str]]:
        """The batch's readings (long form, numbered on from the job's count) and problems."""
        row = self.stats.readings
        readings, problems, topics = [], [], {}
        for delivery in batch:
            for item in readings_of_message(delivery.payload):
                row += 1
                topics[row] = delivery.topic
                if isinstance(item, Problem):
                    problems.append((row, item.field, item.value, item.reason))
                else:
                    readings.append({**item, "row_number": row})
        columns = [k for k in READING_KEYS if k != "source"
                   or any(r["source"] is not None for r in readings)]
        frame = pd.DataFrame(readings, columns=[*READING_KEYS, "row_number"], dtype=object)
        frame = frame[[*columns, "row_number"]].astype({"row_number": "int64"})
        return frame, pd.DataFrame(problems, columns=REJECT_COLUMNS), topics

    def _log_batch(self, before: WatchStats, rejects: pd.DataFrame, topics: dict[int, str],
                   seconds: float) -> None:
        now = self.stats
        LOGGER.info("Batch %d: %d messages, %d readings: %d new, %d updated, %d unchanged, "
                    "%d rejected (%.2f s).", now.batches, now.messages - before.messages,
                    now.readings - before.readings, now.readings_new - before.readings_new,
                    now.readings_updated - before.readings_updated,
                    now.readings_unchanged - before.readings_unchanged,
                    now.rejected - before.rejected, seconds)
        for line in rejects.head(LOGGED_REJECTS_PER_BATCH).itertuples(index=False):
            LOGGER.warning("Rejected reading %d (topic %s): %s %r %s.", line.row_number,
                           topics.get(line.row_number, "?"), line.field, line.value, line.reason)
        if len(rejects) > LOGGED_REJECTS_PER_BATCH:
            LOGGER.warning("... and %d more rejections in this batch (see ingest_rejects of run "
                           "%s).", len(rejects) - LOGGED_REJECTS_PER_BATCH, now.run_id)
