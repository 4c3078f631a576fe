"""Who may do what: every role, every 401 and 403, reading open or closed, keys kept hashed."""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from geo import alerts, keys
from service.app import create_app
from service.settings import ServiceSettings
from tests.tools import problem_of


@pytest.fixture(scope="module")
def alert_id(sample_engine) -> int:
    with sample_engine.begin() as conn:
        manhole = conn.execute(sa.text(
            "SELECT id, ST_AsEWKT(geom) AS ewkt FROM manholes ORDER BY id LIMIT 1")).one()
        made, _ = alerts.raise_alert(
            conn, kind="manhole_tilt", severity="high", asset_layer="manholes",
            asset_id=manhole.id, geom_ewkt=manhole.ewkt, reason="cover tilted 12.0 deg")
    return made


@pytest.fixture(scope="module")
def revoked_key(sample_engine) -> str:
    with sample_engine.begin() as conn:
        key = keys.create_key(conn, name="test-revoked", role="admin")
        keys.revoke_key(conn, "test-revoked")
    return key


@pytest.fixture(scope="module")
def closed_client(sample_engine) -> Iterator[TestClient]:
    """The app with reading closed: every request needs a key."""
    with TestClient(create_app(sample_engine, ServiceSettings(open_read=False)),
                    raise_server_exceptions=False) as test_client:
        yield test_client


def assert_problem(response, status: int) -> None:
    assert problem_of(response, status)["status"] == status
    if status == 401:
        assert response.headers["www-authenticate"]


def write(client, headers: dict | None = None):
    """A crew write that changes nothing, allowed or not: an empty batch of readings."""
    return client.post("/readings", json=[], headers=headers or {})


def test_a_write_without_a_key_is_401(client, alert_id):
    assert_problem(write(client), 401)
    assert_problem(client.post(f"/alerts/{alert_id}/acknowledge"), 401)
    assert_problem(client.post(f"/alerts/{alert_id}/acknowledge", headers={"X-API-Key": ""}),
                   401)


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
def test_a_wrong_or_revoked_key_is_401(client, alert_id, revoked_key, header):
    for key in ("twin_not-a-key", revoked_key):
        value = f"Bearer {key}" if header == "Authorization" else key
        assert_problem(write(client, {header: value}), 401)
        # A bad key is refused even where no key is needed: it is a mistake worth telling.
        assert_problem(client.get("/alerts", headers={header: value}), 401)


def test_a_viewer_may_read_but_not_write(client, alert_id, api_keys):
    viewer = {"X-API-Key": api_keys["viewer"]}
    assert client.get("/alerts", headers=viewer).status_code == 200
    assert client.get(f"/alerts/{alert_id}", headers=viewer).status_code == 200
    assert_problem(write(client, viewer), 403)
    for action in ("acknowledge", "start", "resolve"):
        assert_problem(client.post(f"/alerts/{alert_id}/{action}", headers=viewer), 403)
    assert_problem(client.post(f"/alerts/{alert_id}/dismiss", json={"note": "no"},
                               headers=viewer), 403)
    assert "viewer" in client.post("/readings", json=[], headers=viewer).json()["detail"]


@pytest.mark.parametrize("role", ["crew", "planner", "admin"])
def test_crew_and_above_may_write(client, api_keys, role):
    assert write(client, {"X-API-Key": api_keys[role]}).status_code == 200


def test_crew_acts_on_alerts_under_its_own_name(client, alert_id, api_keys):
    response = client.post(f"/alerts/{alert_id}/acknowledge",
                           headers={"Authorization": f"Bearer {api_keys['planner']}"})
    assert response.status_code == 200
    assert response.json()["history"][-1]["actor"] == "test-planner"


def test_reading_may_be_closed(closed_client, alert_id, api_keys, revoked_key):
    for path in ("/alerts", f"/alerts/{alert_id}"):
        assert_problem(closed_client.get(path), 401)
        assert_problem(closed_client.get(path, headers={"X-API-Key": revoked_key}), 401)
        for role in keys.ROLES:
            response = closed_client.get(path, headers={"X-API-Key": api_keys[role]})
            assert response.status_code == 200, (role, response.text)
    assert_problem(closed_client.get("/alerts/stream"), 401)
    # Writing is the same with reading open or closed.
    assert_problem(write(closed_client, {"X-API-Key": api_keys["viewer"]}), 403)
    assert write(closed_client, {"X-API-Key": api_keys["crew"]}).status_code == 200


def test_open_reading_needs_no_key(client, alert_id):
    assert client.get("/alerts").status_code == 200
    assert client.get(f"/alerts/{alert_id}").status_code == 200


def test_keys_are_stored_hashed(client, sample_engine, api_keys, revoked_key):
    # Use every key first, so any table that might log a caller has had the chance to.
    for key in (*api_keys.values(), revoked_key):
        client.post("/readings", json=[], headers={"X-API-Key": key})
    with sample_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM api_keys")).mappings().all()
        tables = conn.execute(sa.text(
            "SELECT quote_ident(relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relkind IN ('r', 'p') AND NOT relispartition")).scalars().all()
        secrets = [key[len("twin_"):] for key in (*api_keys.values(), revoked_key)]
        for table in tables:  # no table anywhere holds a key in plain text
            found = conn.execute(sa.text(
                f"SELECT count(*) FROM {table} t WHERE t::text LIKE ANY(:patterns)"),
                {"patterns": [f"%{s}%" for s in secrets]}).scalar()
            assert found == 0, table
    stored = " ".join(str(value) for row in rows for value in row.values())
    for key in (*api_keys.values(), revoked_key):
        assert keys.hash_key(key) in stored
        # Only a short prefix is kept, to tell keys apart in `twin keys list`.
        assert key[len(key) // 2:] not in stored
