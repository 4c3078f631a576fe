"""The councils' living list counts every request, however many there are."""

import sqlalchemy as sa

from civic import council, workflow
from predict.triage import TriageModels


def test_lines_count_every_request_past_the_list_of_requests(sample_engine):
    model, _ = TriageModels(sample_engine).current()
    classify = model.classify
    with sample_engine.begin() as conn:
        lon, lat = conn.execute(sa.text(
            "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
            "FROM compounds ORDER BY name DESC LIMIT 1")).one()  # last in the list's order
        done = workflow.submit(conn, workflow.Submission(
            service_code="other", description="小区里垃圾桶满了", actor="test:council",
            channel="open311", point=(lon, lat)), classify)
        # 5,200 more like it (the list of requests behind the lines stops at 5,000).
        columns = [c for c in conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = "
            "'service_requests' AND is_generated = 'NEVER' AND column_default IS NULL "
            "AND column_name NOT IN ('token', 'fingerprint')")).scalars()]
        listed = ", ".join(columns)
        conn.execute(sa.text(
            f"INSERT INTO service_requests (token, fingerprint, {listed}) "
            f"SELECT md5(n::text || 'council'), md5(n::text), {listed} "
            f"FROM service_requests, generate_series(1, 5200) n WHERE id = :id"),
            {"id": done.request_id})
    with sample_engine.connect() as conn:
        lines, items = council.living_list(conn)
        originals = conn.execute(sa.text(
            "SELECT count(*) FROM service_requests WHERE duplicate_of IS NULL")).scalar_one()
    assert len(items) == 5000  # the page's list of requests is capped ...
    assert sum(line.requests for line in lines) == originals >= 5201  # ... its lines are not
    mine = next(line for line in lines if done.request_id in line.request_ids)
    assert mine.requests == 5201 and mine.matter == done.matter
