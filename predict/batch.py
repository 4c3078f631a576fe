"""Road-wear scoring split into parts, so any number of job workers share one run.

``plan`` chooses what every part uses, once: the model version (the newest stored, unless
one is named), the as-of, the horizons and the threshold, and which streets each part
scores. A part is a district's streets; districts smaller than ``part_streets`` are packed
together and larger ones sliced, so the parts are of like size whatever the districts are,
and streets in no district get parts of their own. ``score_part`` scores one part into the
run's staging rows (geo/score_runs.py); ``publish`` makes the run the current forecasts
once every part is done, in one transaction. ``score_split`` does all three in one process.

A part's forecasts equal those of the same streets in a one-process ``pipeline.score``: a
street's features are its own history and surroundings plus its neighbours' last value and
slope, so a part keeps the context of its streets and their neighbours and nothing else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import pandas as pd
from sqlalchemy.engine import Engine
from threadpoolctl import threadpool_limits

from geo import score_runs as sql
from geo.errors import InvalidInput
from geo.i18n import _
from predict.features import RoadContext, load_road_context, road_features
from predict.pipeline import ROAD_WEAR, load_road_model, street_rows
from predict.road import (
    DEFAULT_HORIZONS,
    RoadModel,
    as_utc,
    check_horizons,
    default_threshold,
    forecast,
    resolve_as_of,
)

# Streets per part: a part then takes seconds, and a province of 100,000 streets is 50 parts.
PART_STREETS = 2_000
# The workers are the parallelism of a split run: each part predicts on one OpenMP thread.
# The boosted trees' predict starts its threads per tree and call: on the busy 2-core machine
# the committed sample's 5 parts of ~80 streets spent 8.6 s predicting with two threads, and
# 2.4 CPU s in all (model load included) with one (docs/benchmarks.md, "Scale-out"). A row's
# forecast is the same either way.
PART_THREADS = 1


# A stored model version never changes (the registry keeps its bytes and their hash), so a
# worker keeps the one it loaded last: reading it back (skops) took 3.8 s a time, longer than
# scoring a part of ~80 streets, and the parts of a run all use one version.
_LOADED: dict[tuple[str, str, str], tuple[RoadModel, dict]] = {}


def _model(engine: Engine, metric: str, version: str) -> tuple[RoadModel, dict]:
    key = (engine.url.render_as_string(hide_password=True), metric, version)
    if key not in _LOADED:
        loaded = load_road_model(engine, metric, version)
        _LOADED.clear()
        _LOADED[key] = loaded
    return _LOADED[key]


@dataclass
class PlannedRun:
    """A planned scoring run: what its parts share, and how many there are."""

    run_id: str
    model_version: str
    as_of: str
    parts: int
    streets: int


def split_parts(groups: list[tuple[int | None, list[int]]], part_streets: int = PART_STREETS
                ) -> list[tuple[int | None, list[int]]]:
    """Parts of at most ``part_streets`` streets from streets grouped by district.

    A district of ``part_streets`` or more is sliced into parts of its own; smaller ones are
    packed together, in district order, into parts whose district is None. Streets in no
    district (``None``) are never packed with a district's.
    """
    if part_streets < 1:
        raise InvalidInput(_("A part must hold at least one street, not {streets}.",
                             streets=part_streets))
    parts: list[tuple[int | None, list[int]]] = []
    packed: list[int] = []
    packed_districts: list[int | None] = []

    def flush() -> None:
        if packed:
            one = packed_districts[0] if len(set(packed_districts)) == 1 else None
            parts.append((one, list(packed)))
            packed.clear()
            packed_districts.clear()

    for district, ids in groups:
        if district is None or len(ids) >= part_streets:
            flush()
            parts.extend((district, ids[i:i + part_streets])
                         for i in range(0, len(ids), part_streets))
            continue
        if len(packed) + len(ids) > part_streets:
            flush()
        packed.extend(ids)
        packed_districts.append(district)
    flush()
    return parts


def plan(engine: Engine, metric: str = "pci", horizons=DEFAULT_HORIZONS, as_of=None, *,
         version: str | None = None, threshold: float | None = None,
         part_streets: int = PART_STREETS, enqueue: bool = False) -> PlannedRun:
    """Choose the model, as-of and parts of a run and keep them; nothing is scored yet.

    With ``enqueue``, one ``score_part`` job per part is queued in the same transaction.

    Raises
    ------
    InvalidInput
        For an undeclared metric, no stored model, or an as-of after the last observation.
    """
    horizons = check_horizons(horizons)
    with engine.connect() as conn:
        scale, as_of = resolve_as_of(conn, metric, as_of)
    model, row = load_road_model(engine, metric, version)
    threshold = default_threshold(scale) if threshold is None else float(threshold)
    run_id = uuid.uuid4().hex
    with engine.begin() as conn:
        parts = split_parts(sql.streets_by_district(conn), part_streets)
        sql.create_run(conn, run_id=run_id, target=ROAD_WEAR, metric=metric,
                       model_version=row["version"], as_of=as_of.to_pydatetime(),
                       horizons=horizons, threshold=threshold, parts=parts)
        if enqueue:
            sql.queue_parts(conn, run_id, len(parts))
    return PlannedRun(run_id, row["version"], str(as_of.date()), len(parts),
                      sum(len(ids) for _, ids in parts))


def part_context(ctx: RoadContext, asset_ids: list[int]) -> RoadContext:
    """The context of some streets and their neighbours: all their features are made of."""
    part = pd.Index(asset_ids)
    near = ctx.neighbours[ctx.neighbours["asset_id"].isin(part)] if not ctx.neighbours.empty \
        else ctx.neighbours
    keep = part.union(pd.Index(near["neighbour_id"].unique() if len(near) else []))

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["asset_id"].isin(keep)] if not frame.empty else frame

    return replace(
        ctx, streets=ctx.streets[ctx.streets.index.isin(keep)], history=rows(ctx.history),
        others={name: rows(frame) for name, frame in ctx.others.items()},
        damage=rows(ctx.damage), debris=rows(ctx.debris),
        manholes=ctx.manholes[ctx.manholes.index.isin(keep)], neighbours=near,
        work=rows(ctx.work), programme=rows(ctx.programme))


def score_part(engine: Engine, run_id: str, part: int, *, scored_by: str | None = None
               ) -> int | None:
    """Score one part of a planned run into its staging rows.

    None when there is nothing to do: the part was done already, or its run is gone (a newer
    run was published first and superseded it).
    """
    with engine.connect() as conn:
        run = sql.get_run(conn, run_id)
        planned = sql.get_part(conn, run_id, part)
    if run is None or planned is None or planned["done_at"] is not None:
        return None
    metric = run["metric"]
    as_of = as_utc(run["as_of"])
    model, row = _model(engine, metric, run["model_version"])
    ids = [int(i) for i in planned["asset_ids"]]
    with engine.connect() as conn:
        ctx = load_road_context(conn, metric, as_of.to_pydatetime(), ids)
    features = road_features(part_context(ctx, ids), as_of)
    if not features.empty:
        features = features[features.index.isin(ids)]
    with threadpool_limits(limits=PART_THREADS, user_api="openmp"):
        frame = forecast(model, features, as_of, list(run["horizons"]), run["threshold"])
    to_write = street_rows(frame, run_id=run_id, model_version=row["version"],
                           metric_id=model.scale.id, as_of=as_of)
    with engine.begin() as conn:
        return sql.write_part(conn, run_id, part, to_write, scored_by=scored_by)


def publish(engine: Engine, run_id: str, *, refresh: bool = False) -> int | None:
    """Make a run the current forecasts if every part is done (rows published, else None).

    With ``refresh``, the alerts' refresh is queued (per district) in the same transaction,
    so the forecasts it reads are the run's.
    """
    with engine.begin() as conn:
        rows = sql.publish(conn, run_id)
        if rows is not None and refresh:
            sql.queue_refresh(conn)
        return rows


def score_split(engine: Engine, metric: str = "pci", horizons=DEFAULT_HORIZONS, as_of=None, *,
                version: str | None = None, part_streets: int = PART_STREETS) -> PlannedRun:
    """Plan a run and score every part in this process, then publish it."""
    run = plan(engine, metric, horizons, as_of, version=version, part_streets=part_streets)
    for part in range(run.parts):
        score_part(engine, run.run_id, part)
    publish(engine, run.run_id)
    return run
