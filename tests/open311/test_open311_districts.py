"""Resident requests carry the district they lie in, and are routed by it."""

import sqlalchemy as sa

from .conftest import post


def test_a_request_knows_its_district_and_goes_to_its_community(client, api_keys,
                                                                 street_points, sample_engine):
    # A place on a street and in no compound: a small matter goes to the community.
    with sample_engine.connect() as conn:
        lon, lat = next(
            (x, y) for x, y in street_points if not conn.execute(sa.text(
                "SELECT EXISTS (SELECT 1 FROM compounds WHERE ST_Intersects(geom, "
                "ST_SetSRID(ST_MakePoint(:x, :y), 4326)))"), {"x": x, "y": y}).scalar_one())
        grid, community, sub_district = conn.execute(sa.text(
            "SELECT name, community, sub_district FROM districts "
            "WHERE id = district_of(ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
            {"x": lon, "y": lat}).one()
    r = post(client, api_key=api_keys["viewer"], service_code="ground_lock", lat=lat,
             long=lon, description="地锁 on the public bay")
    assert r.status_code == 200, r.text
    request_id = r.json()[0]["service_request_id"]
    got = client.get(f"/open311/v2/requests/{request_id}.json").json()[0]
    assert (got["district"], got["community"], got["sub_district"]) == (
        grid, community, sub_district)
    assert got["agency_responsible"].startswith(f"{community} residents' committee")
    xml = client.get(f"/open311/v2/requests/{request_id}.xml").text
    assert f"<district>{grid}</district>" in xml
