"""Sensor intake over HTTP: a posted batch of readings, checked by ingest's rules, loaded at once.

A batch is a JSON array (or NDJSON, one item a line) of the items the MQTT watcher takes: one
reading ``{"asset_layer", "asset_external_id", "metric", "observed_at", "value"}`` or a sensor
report ``{"asset_layer", "asset_external_id", "observed_at", "metrics": {name: value}}``. Items
are read by the watcher's own parser and validated by ``ingest.validate.validate_readings``;
the accepted readings land in one transaction, recorded as an ingest run with its rejects.

Each reading gets an answer: ``accepted`` (new, or replacing another stored value),
``duplicate`` (stored already with the same value, or repeated earlier in the batch) or
``rejected`` with the reason. Posting a batch again answers ``duplicate`` throughout and
changes no reading.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy.engine import Engine

from geo import intake as intake_sql
from geo import store
from geo.errors import InvalidInput, TwinError
from geo.i18n import _, format_decimal
from ingest.fields import READINGS
from ingest.mapping import identity_mapping
from ingest.validate import REJECT_COLUMNS, ReadingContext, validate_readings
from ingest.watch import MESSAGE_FIELD, READING_KEYS, Problem, readings_of_message

MAX_ITEMS = 10_000  # items (readings or reports) of one batch
MAX_READINGS = 50_000  # readings of one batch, once reports are spread into their metrics
MAX_BYTES = 10 * 1024 * 1024
DEFAULT_SOURCE = "api"
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl",
                "application/jsonlines", "application/x-jsonlines")
JSON_TYPES = ("application/json",)

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"


class BatchTooLarge(TwinError):
    """A batch holds more items, readings or bytes than one post may."""


@dataclass
class ReadingAnswer:
    """What became of one reading of a batch."""

    index: int  # the item's place in the batch, from 0
    metric: str | None  # which reading of a report it is (None when the item holds none)
    status: str  # accepted, duplicate or rejected
    reason: str | None = None


@dataclass
class IntakeReport:
    """The answer to a posted batch: one line per reading, totals, and the run it made."""

    results: list[ReadingAnswer] = field(default_factory=list)
    run_id: int | None = None

    def totals(self) -> dict[str, int]:
        """Readings by status (``updated``: accepted readings that replaced another value)."""
        counts = {"items": len({r.index for r in self.results}), "readings": len(self.results),
                  ACCEPTED: 0, DUPLICATE: 0, REJECTED: 0, "updated": 0}
        for answer in self.results:
            counts[answer.status] += 1
            if answer.status == ACCEPTED and answer.reason:
                counts["updated"] += 1
        return counts

    def as_dict(self) -> dict:
        """The report as the HTTP answer gives it."""
        return {"totals": self.totals(), "run_id": self.run_id,
                "results": [asdict(r) for r in self.results]}


# -- reading the body -----------------------------------------------------------------------


def is_ndjson(content_type: str | None) -> bool:
    """Whether a Content-Type names newline-delimited JSON."""
    return _media_type(content_type) in NDJSON_TYPES


def is_supported(content_type: str | None) -> bool:
    """Whether a batch may come in this Content-Type (none at all is taken for JSON)."""
    media = _media_type(content_type)
    return not media or media in JSON_TYPES or media in NDJSON_TYPES


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_batch(body: bytes, *, ndjson: bool) -> list:
    """The items of a batch body, as parsed JSON values.

    A JSON body is an array of items (a single object is taken as a batch of one); an NDJSON
    body is one item per line, blank lines skipped.

    Raises
    ------
    InvalidInput
        When the body is empty or is not JSON, saying where.
    BatchTooLarge
        When the body holds more than ``MAX_ITEMS`` items.
    """
    if len(body) > MAX_BYTES:
        raise BatchTooLarge(_("The batch is {size} bytes; one post may hold at most {limit} "
                              "bytes. Send it in smaller batches.",
                              size=format_decimal(len(body)), limit=format_decimal(MAX_BYTES)))
    if not body.strip():
        raise InvalidInput(_("The body is empty; send a JSON array of readings or reports."))
    if ndjson:
        items = []
        for number, line in enumerate(body.split(b"\n"), start=1):
            if line.strip():
                items.append(_loads(line, line_number=number))
                _check_count(len(items))
        return items
    document = _loads(body)
    if isinstance(document, dict):
        return [document]
    if not isinstance(document, list):
        raise InvalidInput(_("The body must be a JSON array of readings or sensor reports, not "
                             "a JSON {kind}.",
                             kind=type(document).__name__.replace("NoneType", "null")))
    _check_count(len(document))
    return document


def _check_count(count: int) -> None:
    if count > MAX_ITEMS:
        raise BatchTooLarge(_("The batch holds more than {limit} items; send it in smaller "
                              "batches.", limit=format_decimal(MAX_ITEMS)))


def _loads(data: bytes, *, line_number: int | None = None):
    """Parse JSON; the sentence of a problem names the NDJSON line when there is one."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        values = {"reason": exc.msg, "line": exc.lineno, "column": exc.colno,
                  "character": exc.pos}
        raise InvalidInput(
            _("the body is not valid JSON: {reason} at line {line}, column {column} "
              "(character {character}).", **values) if line_number is None
            else _("line {number}: the body is not valid JSON: {reason} at line {line}, column "
                   "{column} (character {character}).", number=line_number, **values)
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            _("the body is not UTF-8 text (byte {byte}).", byte=exc.start) if line_number is None
            else _("line {number}: the body is not UTF-8 text (byte {byte}).",
                   number=line_number, byte=exc.start)) from None
    except RecursionError:
        raise InvalidInput(
            _("the body is nested too deeply to be a reading.") if line_number is None
            else _("line {number}: the body is nested too deeply to be a reading.",
                   number=line_number)) from None


# -- checking and loading -------------------------------------------------------------------


@dataclass
class _Readings:
    """A batch spread into readings: one numbered row per reading, or a problem."""

    frame: pd.DataFrame  # READING_KEYS + row_number
    problems: pd.DataFrame  # REJECT_COLUMNS
    place: dict[int, tuple[int, str | None]]  # row_number -> (item index, metric)


def _spread(items: list) -> _Readings:
    rows: list[dict] = []
    problems: list[tuple] = []
    place: dict[int, tuple[int, str | None]] = {}
    number = 0
    for index, item in enumerate(items):
        # One item in an array of its own: the watcher's parser then judges it alone (a
        # nested array is not spread into readings, it is a malformed item).
        for reading in readings_of_message(json.dumps([item]).encode()):
            number += 1
            if number > MAX_READINGS:
                raise BatchTooLarge(_("The batch holds more than {limit} readings; send it in "
                                      "smaller batches.", limit=format_decimal(MAX_READINGS)))
            if isinstance(reading, Problem):
                place[number] = (index, None)
                problems.append((number, reading.field, reading.value, reading.reason))
            else:
                metric = reading.get("metric")
                place[number] = (index, None if metric is None else str(metric))
                rows.append({**reading, "row_number": number})
    # As the watcher does: without any source given, the column is left out so the batch's
    # source applies; with some given, the missing ones take it.
    columns = [k for k in READING_KEYS
               if k != "source" or any(r.get("source") is not None for r in rows)]
    frame = pd.DataFrame(rows, columns=[*READING_KEYS, "row_number"], dtype=object)
    frame = frame[[*columns, "row_number"]].astype({"row_number": "int64"})
    return _Readings(frame, pd.DataFrame(problems, columns=REJECT_COLUMNS), place)


def _text_keys(values: pd.Series) -> list[str]:
    return [str(v).strip() for v in values]


def load_batch(engine: Engine, items: list, *, who: str, body: bytes = b"",
               source: str = DEFAULT_SOURCE, now: datetime | None = None) -> IntakeReport:
    """Check a batch by ingest's rules and load its accepted readings in one transaction.

    Parameters
    ----------
    engine : Engine
        A migrated twin database.
    items : list
        The batch's items, parsed (``parse_batch``).
    who : str
        Who posted it (the API key's name), kept with the run.
    body : bytes
        The body as posted, for the run's checksum.
    source : str
        The source of readings that name none.
    now : datetime, optional
        Readings after this are in the future; the current time by default.

    Returns
    -------
    IntakeReport
        One answer per reading, in the batch's order.
    """
    now = now or datetime.now(UTC)
    spread = _spread(items)
    report = IntakeReport()
    if not spread.place:
        return report
    status: dict[int, tuple[str, str | None]] = {}
    rejected = [spread.problems]
    with engine.begin() as conn:
        run_id = store.start_run(conn, layer=READINGS, source=source,
                                 path=f"POST /readings by {who}",
                                 checksum_sha256=hashlib.sha256(body).hexdigest(),
                                 mapping_path=None, pid=store.backend_pid(conn))
        store.create_rejects_stage(conn)
        intake_sql.create_intake_stage(conn)
        frame = spread.frame
        accepted = pd.DataFrame(columns=["row_number"])
        if len(frame):
            known = frame["asset_layer"].notna() & frame["asset_external_id"].notna()
            assets = intake_sql.asset_keys_of(conn, _text_keys(frame["asset_layer"][known]),
                                              _text_keys(frame["asset_external_id"][known]))
            context = ReadingContext(metrics=store.metric_ranges(conn), assets=assets)
            mapping = identity_mapping(list(frame.columns), READING_KEYS)
            checked = validate_readings(frame, mapping, context, source=source, now=now)
            rejected.append(checked.rejects)
            accepted = checked.accepted.sort_values("row_number")
        if len(accepted):
            # A reading repeated within the batch is one reading; the same asset, metric and
            # time with another value is a conflict, rejected as file ingest rejects it.
            key = ["metric_id", "asset_id", "observed_at"]
            first = accepted.groupby(key, sort=False)[["row_number", "value"]].transform("first")
            repeated = accepted["row_number"] != first["row_number"]
            for row, first_row, same in zip(
                    accepted["row_number"][repeated], first["row_number"][repeated],
                    (accepted["value"] == first["value"])[repeated], strict=True):
                earlier = spread.place[int(first_row)][0]
                if same:
                    status[int(row)] = (DUPLICATE, f"repeats item {earlier} of this batch")
                else:
                    rejected.append(pd.DataFrame([(
                        row, "observed_at", "", f"repeats the asset, metric and time of item "
                        f"{earlier} with another value")], columns=REJECT_COLUMNS))
            accepted = accepted[~repeated].rename(columns={"row_number": "item"})
            store.copy_frame(conn, intake_sql.INTAKE_STAGE,
                             accepted[list(intake_sql.INTAKE_STAGE_COLUMNS)])
            outcome = intake_sql.load_intake(conn)
            for row in accepted["item"]:
                row = int(row)
                if row in outcome.new:
                    status[row] = (ACCEPTED, None)
                elif row in outcome.updated:
                    status[row] = (ACCEPTED,
                                   f"replaced the stored value {outcome.updated[row]:g}")
                else:
                    status[row] = (DUPLICATE, "is stored already with the same value")
        rejects = pd.concat([r for r in rejected if len(r)] or [spread.problems],
                            ignore_index=True)
        for row, lines in rejects.groupby("row_number", sort=False):
            status[int(row)] = (REJECTED, "; ".join(
                _sentence(line.field, line.value, line.reason)
                for line in lines.itertuples(index=False)))
        store.copy_frame(conn, "stage_rejects", rejects.assign(outcome="rejected")
                         .sort_values("row_number", kind="stable"))
        store.save_rejects(conn, run_id)
        counted = [s for s, _ in status.values()]
        store.finish_run(
            conn, run_id, status="succeeded", rows_read=len(spread.place),
            counts=store.UpsertCounts(
                rows_new=sum(1 for s, r in status.values() if s == ACCEPTED and r is None),
                rows_updated=sum(1 for s, r in status.values() if s == ACCEPTED and r),
                rows_unchanged=counted.count(DUPLICATE)),
            rows_rejected=counted.count(REJECTED),
            message=f"{len(items)} items posted over HTTP by {who}")
    report.run_id = run_id
    for row, (index, metric) in sorted(spread.place.items()):
        state, reason = status[row]
        report.results.append(ReadingAnswer(index, metric, state, reason))
    return report


def take_batch(engine: Engine, body: bytes, *, ndjson: bool, who: str,
               source: str = DEFAULT_SOURCE) -> IntakeReport:
    """Parse a posted body (``parse_batch``) and load it (``load_batch``)."""
    items = parse_batch(body, ndjson=ndjson)
    return load_batch(engine, items, who=who, body=body, source=source)


def _sentence(field_name: str, value, reason: str) -> str:
    if field_name == MESSAGE_FIELD:
        return f"the item {reason}"
    if reason == "is missing" or value in (None, "", "None", "nan", "<NA>"):
        return f"{field_name} {reason}"
    return f"{field_name} '{value}' {reason}"
