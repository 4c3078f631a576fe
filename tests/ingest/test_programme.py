"""Work records and programmes from a city's files: loaded again, nothing doubles; local times."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from geo.errors import InvalidInput
from ingest.programme import load_work_records


def _streets(engine, n: int) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT external_id FROM streets ORDER BY id LIMIT :n"), {"n": n}).scalars())


def test_work_records_loaded_twice_are_kept_once_on_the_local_clock(sample_engine, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("TWIN_TIMEZONE", "Asia/Shanghai")
    first, second = _streets(sample_engine, 2)
    path = tmp_path / "city-work.csv"
    path.write_text("external_id,action,done_at\n"
                    f"{first},mill_and_overlay,2023-05-10 07:00\n"
                    f"{second},patching,2023-06-01T10:00:00+00:00\n", encoding="utf-8")
    assert load_work_records(sample_engine, path) == 2
    assert load_work_records(sample_engine, path) == 2  # the same file again
    with sample_engine.connect() as conn:
        kept = conn.execute(sa.text(
            "SELECT s.external_id, w.done_at FROM work_records w JOIN streets s "
            "ON s.id = w.asset_id WHERE w.recorded_by = 'city-work' ORDER BY w.done_at")).all()
    assert [(ext, done.astimezone(UTC)) for ext, done in kept] == [
        (first, datetime(2023, 5, 9, 23, 0, tzinfo=UTC)),  # 07:00 in the county is 23:00 UTC
        (second, datetime(2023, 6, 1, 10, 0, tzinfo=UTC))]


def test_a_street_id_two_sources_share_is_refused(sample_engine, tmp_path):
    (shared,) = _streets(sample_engine, 1)
    with sample_engine.begin() as conn:
        columns = ", ".join(conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'streets' "
            "AND is_generated = 'NEVER' AND column_default IS NULL "
            "AND column_name NOT IN ('source', 'id')")).scalars())
        conn.execute(sa.text(
            f"INSERT INTO streets (source, {columns}) SELECT 'other-city', {columns} "
            "FROM streets WHERE external_id = :e"), {"e": shared})
    path = tmp_path / "work.csv"
    path.write_text(f"external_id,action,done_at\n{shared},patching,2023-05-10\n",
                    encoding="utf-8")
    with pytest.raises(InvalidInput, match="line 2: street .* 2 times"):
        load_work_records(sample_engine, path)
    with sample_engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT count(*) FROM work_records WHERE recorded_by = 'work'")).scalar_one() == 0
