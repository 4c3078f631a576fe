"""Two residents reporting one problem at the same moment: one matter, one "+1"."""

import threading

import sqlalchemy as sa

from civic import workflow
from predict.triage import TriageModels


def test_simultaneous_reports_of_one_problem_make_one_matter(sample_engine):
    model, _ = TriageModels(sample_engine).current()
    with sample_engine.connect() as conn:
        places = conn.execute(sa.text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_LineInterpolatePoint(geom, 0.5) p, id "
            "FROM streets WHERE ST_GeometryType(geom) = 'ST_LineString' ORDER BY id) s "
            "WHERE id % 7 = 0 LIMIT 6")).all()
    for round_, (lon, lat) in enumerate(places):
        start = threading.Barrier(2)
        made: list[workflow.Outcome] = []

        def report(who: str, dx: float, round_=round_, lon=lon, lat=lat, start=start,
                   made=made) -> None:
            with sample_engine.begin() as conn:
                start.wait()
                made.append(workflow.submit(conn, workflow.Submission(
                    service_code="other", description="路灯坏了，晚上很黑",
                    actor=f"test:race:{round_}:{who}", channel="open311",
                    point=(lon + dx, lat)), model.classify))

        threads = [threading.Thread(target=report, args=(who, dx))
                   for who, dx in (("a", 0.0), ("b", 10 / 94_000))]  # 10 m apart
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(made) == 2
        originals = [m for m in made if m.duplicate_of is None]
        assert len(originals) == 1, [(m.request_id, m.duplicate_of) for m in made]
        other = next(m for m in made if m.duplicate_of is not None)
        assert other.duplicate_of == originals[0].request_id
