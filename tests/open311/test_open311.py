"""Open311 GeoReport v2: the georeport client, round trips, errors, duplicates, SLA, privacy."""

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from georeport import GeoReport

from civic.workflow import escalate_overdue
from geo import outbox
from predict.triage import evaluate

from .conftest import post

NAME, LAST, PHONE, EMAIL = "Zhangwei-Unique", "Lixiaolong-Unique", "13912345678", "wei.z@example.cn"


def _count(engine, table="service_requests"):
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def _request(client, request_id, key: str | None = None) -> dict:
    """One request as ``GET /requests/{id}.json`` shows it (to ``key``'s role, else the public)."""
    headers = {"X-API-Key": key} if key else None
    return client.get(f"/open311/v2/requests/{request_id}.json", headers=headers).json()[0]


def _staff(client, request_id, action: str, key: str, **body):
    """A staff action (``status``, ``classification``) on a request, with ``key``."""
    return client.post(f"/open311/v2/requests/{request_id}/{action}",
                       headers={"X-API-Key": key}, **body)


def test_georeport_client_reads_services(live_url):
    client = GeoReport(live_url)
    services = client.get_service_list()
    codes = {s["service_code"] for s in services}
    assert {"pothole", "road_cracking", "manhole_cover", "blocked_drain", "debris_pile",
            "illegal_dumping", "ground_lock", "occupied_green_space", "streetlight"} <= codes
    definition = client.get_service_definition("pothole")
    assert definition["attributes"][0]["code"] == "size"
    assert definition["attributes"][0]["required"] is True
    xml_services = GeoReport(live_url, output_format="xml").get_service_list()
    assert {s["service_code"] for s in xml_services} == codes
    xml_def = GeoReport(live_url, output_format="xml").get_service_definition("blocked_drain")
    assert xml_def["service_code"] == "blocked_drain"


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_post_round_trip(client, live_url, api_keys, street_points, fmt, sample_engine):
    lon, lat = street_points[0 if fmt == "json" else 1]
    r = post(client, fmt, api_key=api_keys["viewer"], service_code="pothole", lat=lat,
             long=lon, **{"attribute[size]": "large"}, description="Deep hole, 深坑")
    assert r.status_code == 200, r.text
    if fmt == "json":
        answer = r.json()
        assert isinstance(answer, list) and len(answer) == 1
        request_id, token = answer[0]["service_request_id"], answer[0]["token"]
    else:
        root = ET.fromstring(r.content)
        assert root.tag == "service_requests"
        request_id = root.find("request/service_request_id").text
        token = root.find("request/token").text
    reader = GeoReport(live_url, output_format=fmt)
    got = reader.get_service_request(request_id)
    assert got["service_request_id"] == request_id
    assert got["service_code"] == "pothole"
    assert got["status"] == "open"
    assert got["description"] == "Deep hole, 深坑"
    assert abs(float(got["lat"]) - lat) < 1e-6 and abs(float(got["long"]) - lon) < 1e-6
    for field in ("requested_datetime", "expected_datetime", "updated_datetime"):
        when = datetime.fromisoformat(got[field])
        assert when.tzinfo is not None
    expected = datetime.fromisoformat(got["expected_datetime"])
    requested = datetime.fromisoformat(got["requested_datetime"])
    assert expected - requested == timedelta(hours=72)
    assert "Transport" in got["agency_responsible"]
    listed = reader.get_service_requests(service_request_id=request_id)
    listed = listed if isinstance(listed, list) else [listed]
    assert [x["service_request_id"] for x in listed] == [request_id]
    tok = client.get(f"/open311/v2/tokens/{token}.json").json()
    assert tok == [{"service_request_id": request_id, "token": token}]
    # The twin got a resident observation.
    with sample_engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT source, confidence, damage_class, severity FROM road_damage "
            "WHERE external_id = :e"), {"e": f"SR-{request_id}"}).one()
    assert tuple(row) == ("resident", 0.6, "D40", "high")


def test_list_filters(client, api_keys):
    listed = client.get("/open311/v2/requests.json", params={"service_code": "pothole",
                                                             "status": "open"})
    assert listed.status_code == 200
    assert all(r["service_code"] == "pothole" and r["status"] == "open" for r in listed.json())
    assert len(listed.json()) >= 1


def _errors(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body, list) and body[0]["code"] == status and body[0]["description"]
    return body[0]["description"]


def test_every_error_answers_the_spec_way(client, api_keys, street_points, sample_engine):
    lon, lat = street_points[2]
    key = api_keys["viewer"]
    good = {"service_code": "debris_pile", "lat": lat, "long": lon,
            "attribute[volume]": "1to5"}
    before = (_count(sample_engine), _count(sample_engine, "debris_piles"),
              _count(sample_engine, "service_request_contacts"))
    _errors(post(client, **good), 403)  # no api_key
    _errors(post(client, api_key="nope", **good), 403)
    _errors(post(client, api_key=key, **{**good, "service_code": "teleport"}), 400)
    _errors(post(client, api_key=key, **{**good, "service_code": ""}), 400)
    assert "volume" in _errors(post(client, api_key=key, **{
        k: v for k, v in good.items() if k != "attribute[volume]"}), 400)
    _errors(post(client, api_key=key, **{**good, "attribute[volume]": "lots"}), 400)
    assert "4,000" in _errors(post(client, api_key=key, description="x" * 5000,
                                   first_name=NAME, **good), 400)
    assert "outside" in _errors(post(client, api_key=key, **{**good, "lat": 39.9,
                                                              "long": 116.4}), 400)
    _errors(post(client, api_key=key, **{**good, "lat": "north"}), 400)
    _errors(post(client, api_key=key, **{**good, "lat": 95}), 400)
    _errors(post(client, api_key=key, service_code="debris_pile",
                 **{"attribute[volume]": "lt1"}), 400)  # no location
    _errors(post(client, api_key=key, service_code="debris_pile", address_string="Atlantis",
                 **{"attribute[volume]": "lt1"}), 400)
    _errors(post(client, api_key=key, service_code="other", lat=lat, long=lon), 400)
    assert (_count(sample_engine), _count(sample_engine, "debris_piles"),
            _count(sample_engine, "service_request_contacts")) == before  # nothing half-written
    _errors(client.get("/open311/v2/services/teleport.json"), 404)
    _errors(client.get("/open311/v2/services/pothole.csv"), 404)
    _errors(client.get("/open311/v2/requests/999999999.json"), 404)
    _errors(client.get("/open311/v2/requests/abc.json"), 404)
    _errors(client.get("/open311/v2/tokens/nope.json"), 404)
    _errors(client.get("/open311/v2/requests.json", params={
        "start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}), 400)
    _errors(client.get("/open311/v2/requests.json", params={"start_date": "yesterday"}), 400)
    _errors(client.get("/open311/v2/requests.json", params={"status": "pending"}), 400)
    xml = client.get("/open311/v2/requests/999999999.xml")
    assert xml.status_code == 404
    assert ET.fromstring(xml.content).find("error/code").text == "404"
    # A flood of identical posts: the first is taken, the rest refused.
    first = post(client, api_key=key, **good)
    assert first.status_code == 200
    for _ in range(3):
        assert "already" in _errors(post(client, api_key=key, **good), 400)
    assert _count(sample_engine) == before[0] + 1


def test_address_string_is_located(client, api_keys, sample_engine):
    with sample_engine.connect() as conn:
        name = conn.execute(sa.text(
            "SELECT name FROM compounds WHERE management_type = 'unmanaged' ORDER BY id "
            "LIMIT 1")).scalar_one()
    r = post(client, api_key=api_keys["viewer"], service_code="ground_lock",
             address_string=name, description="ground lock on the public space")
    assert r.status_code == 200, r.text
    got = _request(client, r.json()[0]["service_request_id"])
    assert got["matter"] == "small"
    # An unmanaged compound's small matters go to its residents' committee.
    assert got["agency_responsible"] == f"{name} residents' committee"


def test_request_20_m_from_open_pothole_joins_it(client, api_keys, street_points):
    lon, lat = street_points[3]
    key = api_keys["viewer"]
    first = post(client, api_key=key, service_code="pothole", lat=lat, long=lon,
                 **{"attribute[size]": "medium"}).json()[0]
    near_lat = lat + 20 / 111_000  # 20 m north
    second = post(client, api_key=api_keys["crew"], service_code="pothole", lat=near_lat,
                  long=lon, **{"attribute[size]": "medium"})
    assert second.status_code == 200, second.text
    second = second.json()[0]
    assert second["service_request_id"] != first["service_request_id"]
    assert second["status"] == "open"
    got = _request(client, second["service_request_id"])
    assert got["duplicate_of"] == first["service_request_id"]
    original = _request(client, first["service_request_id"])
    assert original["supporters"] == 1
    far = post(client, api_key=key, service_code="pothole", lat=lat + 60 / 111_000, long=lon,
               **{"attribute[size]": "small"}).json()[0]
    assert _request(client, far["service_request_id"])["duplicate_of"] is None
    # Settling the matter closes the supporter too, with the notes.
    _errors(_staff(client, first["service_request_id"], "status", api_keys["viewer"],
                   data={"status": "closed"}), 403)
    done = _staff(client, first["service_request_id"], "status", api_keys["crew"],
                  data={"status": "closed", "status_notes": "Patched on Tuesday."})
    assert done.status_code == 200, done.text
    got = _request(client, second["service_request_id"])
    assert (got["status"], got["status_notes"]) == ("closed", "Patched on Tuesday.")


def test_overdue_request_raises_alert(client, api_keys, street_points, sample_engine):
    lon, lat = street_points[4]
    made = post(client, api_key=api_keys["viewer"], service_code="manhole_cover", lat=lat,
                long=lon, **{"attribute[cover_state]": "missing"}).json()[0]
    request_id = int(made["service_request_id"])
    with sample_engine.begin() as conn:
        escalated = dict(escalate_overdue(conn, datetime.now(UTC) + timedelta(hours=5)))
    assert request_id in escalated
    with sample_engine.connect() as conn:
        alert = conn.execute(sa.text(
            "SELECT kind, severity, status, reason FROM alerts WHERE id = :id"),
            {"id": escalated[request_id]}).one()
    assert alert.kind == "request_overdue" and alert.severity == "high"
    assert "Housing" in alert.reason
    with sample_engine.begin() as conn:  # raised once
        assert request_id not in dict(escalate_overdue(conn, datetime.now(UTC)
                                                        + timedelta(hours=5)))


def test_a_settled_overdue_alert_closes_the_supporters_too_and_a_reopen_holds(
        client, api_keys, street_points, sample_engine):
    lon, lat = street_points[6]
    crew = {"X-API-Key": api_keys["crew"]}
    first = post(client, api_key=api_keys["viewer"], service_code="manhole_cover", lat=lat,
                 long=lon, **{"attribute[cover_state]": "missing"}).json()[0]
    second = post(client, api_key=api_keys["crew"], service_code="manhole_cover",
                  lat=lat + 10 / 111_000, long=lon,
                  **{"attribute[cover_state]": "missing"}).json()[0]
    original, supporter = int(first["service_request_id"]), int(second["service_request_id"])
    assert _request(client, supporter)["duplicate_of"] == str(original)
    later = datetime.now(UTC) + timedelta(hours=5)
    with sample_engine.begin() as conn:
        alert_id = dict(escalate_overdue(conn, later))[original]
    fixed = client.post(f"/alerts/{alert_id}/resolve", json={"note": "Cover replaced."},
                        headers=crew)
    assert fixed.status_code == 200, fixed.text
    with sample_engine.begin() as conn:
        escalate_overdue(conn, later)  # closes what its settled alert speaks for
    with sample_engine.connect() as conn:
        stored = dict(conn.execute(sa.text(
            "SELECT id, status FROM service_requests WHERE id IN (:a, :b)"),
            {"a": original, "b": supporter}).all())
        told = [(o["payload"]["status"], o["payload"]["note"])
                for o in outbox.outbox_of(conn, supporter)]
    assert stored == {original: "closed", supporter: "closed"}
    assert told[-1] == ("closed", "Cover replaced.")  # the supporter's reporter is told
    # "It is not fixed": the crew reopens it, and it stays open for everyone.
    reopened = _staff(client, original, "status", api_keys["crew"],
                      data={"status": "open", "status_notes": "Still missing."})
    assert reopened.status_code == 200, reopened.text
    with sample_engine.begin() as conn:
        escalate_overdue(conn, later)
    for rid in (original, supporter):
        got = _request(client, rid)
        assert got["status"] == "open", (rid, got["status_notes"])


def test_contact_details_never_public(client, api_keys, street_points):
    lon, lat = street_points[5]
    r = post(client, api_key=api_keys["viewer"], service_code="debris_pile", lat=lat, long=lon,
             **{"attribute[volume]": "gt5"}, first_name=NAME, last_name=LAST, phone=PHONE,
             email=EMAIL, description=f"Rubble pile. Call me on {PHONE} or {EMAIL}")
    assert r.status_code == 200, r.text
    rid = r.json()[0]["service_request_id"]
    bodies = [r.content]
    for url in (f"/open311/v2/requests/{rid}.json", f"/open311/v2/requests/{rid}.xml",
                "/open311/v2/requests.json", "/open311/v2/requests.xml",
                f"/open311/v2/requests.json?service_request_id={rid}",
                "/open311/v2/services.json", "/open311/v2/services/debris_pile.xml",
                "/ogc/collections/debris_piles/items?limit=10000",
                "/ogc/collections/alerts/items?limit=10000",
                "/exports/debris_piles.geojson", "/exports/debris_piles.csv",
                "/exports/alerts.geojson"):
        got = client.get(url)
        assert got.status_code == 200, (url, got.text[:200])
        bodies.append(got.content)
    import morecantile

    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 16)
    for layer in ("debris_piles", "alerts"):
        got = client.get(f"/tiles/{layer}/{tile.z}/{tile.x}/{tile.y}.mvt")
        assert got.status_code in (200, 204)
        bodies.append(got.content)
    for body in bodies:
        for secret in (NAME, LAST, PHONE, EMAIL):
            assert secret.encode() not in body
    assert b"[phone removed]" in bodies[1]
    # Admin sees them.
    admin = _request(client, rid, api_keys["admin"])
    assert (admin["first_name"], admin["phone"], admin["email"]) == (NAME, PHONE, EMAIL)
    planner = _request(client, rid, api_keys["planner"])
    assert "phone" not in planner


def test_free_text_triage_and_staff_override(client, api_keys, street_points, sample_engine):
    lon, lat = street_points[6]
    r = post(client, api_key=api_keys["viewer"], service_code="other", lat=lat, long=lon,
             description="我家厨房水槽堵了")
    assert r.status_code == 200, r.text
    rid = r.json()[0]["service_request_id"]
    got = _request(client, rid)
    assert got["matter"] == "private" and got["status"] == "closed"
    _errors(_staff(client, rid, "classification", api_keys["crew"], data={"matter": "big"}), 403)
    _errors(_staff(client, rid, "classification", api_keys["planner"], data={"matter": "huge"}),
            400)
    over = _staff(client, rid, "classification", api_keys["planner"],
                  json={"matter": "small", "note": "shared drain of the building"})
    assert over.status_code == 200, over.text
    assert over.json()["matter_source"] == "staff"
    got = _request(client, rid)
    assert (got["matter"], got["status"]) == ("small", "open")
    retrained = client.post("/open311/v2/classifier/retrain",
                            headers={"X-API-Key": api_keys["admin"]})
    assert retrained.status_code == 200 and retrained.json()["staff_examples"] >= 1


def test_attribute_decides_private(client, api_keys, street_points):
    lon, lat = street_points[7]
    r = post(client, api_key=api_keys["viewer"], service_code="blocked_drain", lat=lat,
             long=lon, **{"attribute[where]": "inside_home"})
    rid = r.json()[0]["service_request_id"]
    got = _request(client, rid)
    assert got["matter"] == "private" and got["status"] == "closed"
    # Inside a home: the public learns neither where nor what, in any list; staff do.
    assert (got["lat"], got["long"], got["address"], got["description"]) == (None,) * 4
    listed = client.get("/open311/v2/requests.json", params={"matter": "private"}).json()
    assert all(x["lat"] is None and x["description"] is None for x in listed)
    assert rid in {x["service_request_id"] for x in listed}
    admin = _request(client, rid, api_keys["admin"])
    assert admin["lat"] == pytest.approx(lat) and admin["long"] == pytest.approx(lon)


def test_classifier_held_out_accuracy():
    result = evaluate()
    print("\n" + result.as_markdown())
    held = result.held_out
    assert held.rows >= 100
    assert held.matter_accuracy >= 0.7
    assert set(held.matter_by_lang) == {"en", "zh"}


def test_free_text_reaches_the_right_trade_in_both_languages():
    from predict.triage import fit_model

    model, _ = fit_model()
    routed = {text: model.classify(text)[:2] for text in (
        "streetlight broken", "路灯坏了", "road collapse", "路面塌陷",
        "drain blocked, the street floods", "下水道堵了", "rubbish dumped by the road",
        "路边乱倒垃圾", "cars parked on the lawn", "绿化带上停满了车",
        "ground lock on the public parking space", "公共车位上装了地锁", "我家马桶堵了")}
    assert routed["streetlight broken"] == routed["路灯坏了"] == ("big", "lighting")
    assert routed["road collapse"] == routed["路面塌陷"] == ("big", "roads")
    assert routed["下水道堵了"][1] == routed["drain blocked, the street floods"][1] == "drainage"
    assert routed["路边乱倒垃圾"] == routed["rubbish dumped by the road"] == ("small", "sanitation")
    assert routed["绿化带上停满了车"][1] == routed["cars parked on the lawn"][1] == "greening"
    assert routed["公共车位上装了地锁"][1] == "property_management"
    assert routed["我家马桶堵了"] == ("private", "resident")
    # On the bilingual evaluation set, Chinese does at least as well as English.
    bilingual = evaluate().bilingual
    assert bilingual.matter_by_lang["zh"] >= bilingual.matter_by_lang["en"] >= 0.9
    assert bilingual.department_by_lang["zh"] >= bilingual.department_by_lang["en"] >= 0.9
