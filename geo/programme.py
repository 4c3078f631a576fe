"""SQL of the paving programme: streets scheduled for treatment, with year and treatment."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection


def street_ids(conn: Connection, external_ids: list[str]) -> dict[str, list[int]]:
    """The twin's ids of each street external id that exists.

    More than one where several sources use the same external id.
    """
    rows = conn.execute(sa.text(
        "SELECT external_id, array_agg(id ORDER BY id) FROM streets "
        "WHERE external_id = ANY(:ids) GROUP BY external_id"),
        {"ids": list(external_ids)}).all()
    return {str(r[0]): [int(i) for i in r[1]] for r in rows}


def delete_work_records_of(conn: Connection, source: str) -> int:
    """Drop the work records a file of ``source`` loaded before (not the crews' own)."""
    return conn.execute(sa.text(
        "DELETE FROM work_records WHERE alert_id IS NULL AND recorded_by = :source"),
        {"source": source}).rowcount


def replace_programme(conn: Connection, source: str, entries: pd.DataFrame) -> int:
    """Replace the programme entries of one source by ``entries`` (in the caller's transaction).

    A programme is republished whole, so the source's older entries go: an entry dropped
    from the new programme must not keep resetting a forecast.
    """
    conn.execute(sa.text("DELETE FROM paving_programme WHERE source = :s"), {"s": source})
    if entries.empty:
        return 0
    conn.execute(sa.text(
        "INSERT INTO paving_programme (street_id, year, treatment, planned_on, published_on, "
        "source) VALUES (:street_id, :year, :treatment, :planned_on, :published_on, :source)"),
        [{**row, "source": source} for row in entries.to_dict("records")])
    return len(entries)


def programme_for_streets(conn: Connection, asset_ids: list[int]) -> pd.DataFrame:
    """Programme entries of some streets (street_id, year, treatment, planned_on, published_on)."""
    rows = conn.execute(sa.text(
        "SELECT street_id, year, treatment, planned_on, published_on FROM paving_programme "
        "WHERE street_id = ANY(:ids) ORDER BY street_id, year"), {"ids": list(asset_ids)}).all()
    return pd.DataFrame([tuple(r) for r in rows],
                        columns=["street_id", "year", "treatment", "planned_on", "published_on"])
