"""Hostile text and dates on every route of the OpenAPI document (issue 17): no 500, no wrong row.

Schemathesis (test_fuzz.py) sends what the schema makes likely; this sends what an attacker or
a broken device sends: NUL and other control characters, a megabyte of text, right-to-left
marks, emoji, SQL fragments, lone surrogates, and dates of year 1, 9999, a leap second and the
extreme offsets. Every query parameter of every operation gets each value, every text field
of the JSON and form bodies too, and then the database is searched for anything that should
not have been stored. MQTT gets the same values in tests/ingest/test_watch.py's fashion below.
"""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

TEXT = [
    "a\x00b",
    "bell\x07 escape\x1b[31m",
    "\u202eevil\u202c txt",
    "🚧🕳️ 井盖",
    "'; DROP TABLE alerts; --",
    "1 OR 1=1",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "%00%ff",
]
# A lone surrogate: not text at all, but valid as a JSON escape (query strings and forms
# cannot carry it).
SURROGATE = "\ud800"
DATES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-12:00",
    "2016-12-31T23:59:60Z",
    "2026-11-30T10:00:00+14:00",
    "2026-11-30T10:00:00-12:00",
    "2026-02-30",
    "1e308",
]
LONG = "x" * 1_000_000
ENDLESS = {"/alerts/stream"}
# Path parameters get a plausible value, so the request reaches the code behind them.
PATH_VALUES = {"layer": "streets", "collectionId": "streets", "z": "14", "x": "13252",
               "y": "6602", "fmt": "json", "suffix": "geojson", "name": "streets"}


def _path(path: str, ids: dict[str, int]) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        return str(ids.get(name, PATH_VALUES.get(name, "1")))
    return re.sub(r"\{([^}]+)\}", value, path)


def _server_errors(responses) -> list[str]:
    return [f"{label}: {response.status_code} {response.text[:200]}"
            for label, response in responses if response.status_code >= 500]


@pytest.fixture(scope="module")
def operations(client) -> list[tuple[str, str, dict]]:
    spec = client.get("/openapi.json").json()
    return [(method.upper(), path, operation) for path, methods in spec["paths"].items()
            for method, operation in methods.items() if path not in ENDLESS]


@pytest.fixture(scope="module")
def ids(sample_engine) -> dict[str, int]:
    from geo import alerts

    with sample_engine.begin() as conn:
        manhole = conn.execute(sa.text(
            "SELECT id, ST_AsEWKT(geom) FROM manholes ORDER BY id LIMIT 1")).one()
        alert, _ = alerts.raise_alert(conn, kind="manhole_tilt", severity="high",
                                      asset_layer="manholes", asset_id=manhole[0],
                                      geom_ewkt=manhole[1], reason="cover tilted 13 deg",
                                      details={})
    return {"alert_id": alert}


def test_hostile_query_parameters_on_every_operation(client, operations, ids, api_keys):
    headers = {"X-API-Key": api_keys["admin"]}
    responses = []
    for method, path, operation in operations:
        url = _path(path, ids)
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            for value in [*TEXT, *DATES, "x" * 10_000]:
                response = client.request(method, url, params={parameter["name"]: value},
                                          headers=headers)
                responses.append((f"{method} {path}?{parameter['name']}={value[:20]!r}",
                                  response))
    assert len(responses) > 300
    assert not _server_errors(responses), "\n".join(_server_errors(responses))


def _text_properties(schema: dict, spec: dict) -> list[str]:
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return [name for name, prop in schema.get("properties", {}).items()
            if "string" in json.dumps(prop) or "$ref" in prop]


def test_hostile_text_in_every_json_body_field(client, operations, ids, api_keys):
    spec = client.get("/openapi.json").json()
    headers = {"X-API-Key": api_keys["admin"], "Content-Type": "application/json"}
    responses = []
    for method, path, operation in operations:
        schema = operation.get("requestBody", {}).get("content", {}).get(
            "application/json", {}).get("schema")
        if not schema or schema.get("type") == "array":
            continue
        for field in _text_properties(schema, spec):
            for value in [*TEXT, SURROGATE, *DATES, LONG]:
                response = client.request(method, _path(path, ids),
                                          content=json.dumps({field: value}), headers=headers)
                responses.append((f"{method} {path} {field}={value[:20]!r}", response))
    assert responses, "no JSON body with text fields was found"
    assert not _server_errors(responses), "\n".join(_server_errors(responses))


READING_FIELDS = ("asset_layer", "asset_external_id", "metric", "observed_at", "source")


def test_hostile_text_and_dates_in_posted_readings(client, api_keys, sample_engine):
    with sample_engine.connect() as conn:
        manhole = conn.execute(sa.text("SELECT external_id FROM manholes ORDER BY id LIMIT 1")
                               ).scalar_one()
    good = {"asset_layer": "manholes", "asset_external_id": manhole, "metric": "tilt_deg",
            "observed_at": "2026-11-30T10:00:00+08:00", "value": 1.5, "source": "fuzz"}
    headers = {"X-API-Key": api_keys["crew"], "Content-Type": "application/json"}
    responses = []
    for field in READING_FIELDS:
        for value in [*TEXT, SURROGATE, *DATES, LONG]:
            response = client.post("/readings", content=json.dumps([{**good, field: value}]),
                                   headers=headers)
            responses.append((f"/readings {field}={value[:20]!r}", response))
    assert not _server_errors(responses), "\n".join(_server_errors(responses))


def test_hostile_text_in_every_open311_form_field(client, sample_engine):
    with sample_engine.connect() as conn:
        lon, lat = conn.execute(sa.text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_LineInterpolatePoint(geom, 0.5) p "
            "FROM streets WHERE ST_GeometryType(geom) = 'ST_LineString' ORDER BY id LIMIT 1) s"
        )).one()
    services = client.get("/open311/v2/services.json").json()
    form = {"service_code": services[0]["service_code"], "lat": str(lat), "long": str(lon),
            "description": "pothole by the gate", "address_string": "gate 2",
            "first_name": "Li", "last_name": "Wang", "email": "li@example.cn",
            "phone": "13700001111", "media_url": "https://example.cn/p.jpg",
            "device_id": "phone-1", "account_id": "acct-1"}
    responses = []
    for field in form:
        for value in [*TEXT, *DATES, "x" * 60_000]:
            for fmt in ("json", "xml"):
                response = client.post(f"/open311/v2/requests.{fmt}",
                                       data={**form, field: value})
                responses.append((f"requests.{fmt} {field}={value[:20]!r}", response))
    assert not _server_errors(responses), "\n".join(_server_errors(responses))


def test_nothing_wrong_was_stored(client, sample_engine, operations, ids, api_keys):
    """Run after the others (file order): no text column holds what was refused."""
    with sample_engine.connect() as conn:
        columns = conn.execute(sa.text(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' "
            "AND c.data_type IN ('text', 'character varying')")).all()
        wrong = []
        for table, column in columns:
            found = conn.execute(sa.text(
                f'SELECT count(*) FROM "{table}" WHERE "{column}" ~ '
                r"'[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]' OR length("
                f'"{column}") > 100000')).scalar_one()
            if found:
                sample = conn.execute(sa.text(
                    f'SELECT left("{column}", 80) FROM "{table}" WHERE "{column}" ~ '
                    r"'[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]' OR length("
                    f'"{column}") > 100000 LIMIT 1')).scalar_one()
                wrong.append(f"{table}.{column}: {found} rows, e.g. {sample!r}")
        # No reading outside the plausible window, whatever the offset said.
        outside = conn.execute(sa.text(
            "SELECT count(*) FROM readings WHERE observed_at < '1970-01-01' "
            "OR observed_at > now() + interval '2 days'")).scalar_one()
    assert not wrong, wrong
    assert outside == 0
