"""Open311 fixtures: the sample twin behind the real app with the open311 router mounted."""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import ServiceSettings
from tests.service.conftest import api_keys  # noqa: F401
from tests.tools import served


def _app(engine):
    return create_app(engine, ServiceSettings())


@pytest.fixture(scope="module")
def client(sample_engine) -> Iterator[TestClient]:  # noqa: F811
    with TestClient(_app(sample_engine), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def live_url(sample_engine) -> Iterator[str]:  # noqa: F811
    with served(_app(sample_engine)) as url:
        yield f"{url}/open311/v2"


@pytest.fixture(scope="module")
def street_points(sample_engine) -> list[tuple[float, float]]:  # noqa: F811
    """Points on distinct streets far apart (one per test that needs a fresh place)."""
    with sample_engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_LineInterpolatePoint(geom, 0.5) AS p, id "
            "FROM streets WHERE ST_GeometryType(geom) = 'ST_LineString' ORDER BY id) s "
            "WHERE id % 5 = 0 LIMIT 80")).all()
    chosen: list[tuple[float, float]] = []
    for x, y in rows:  # keep points >= 150 m from each other, so tests do not meet
        if all(((x - a) * 94_000) ** 2 + ((y - b) * 111_000) ** 2 > 150 ** 2 for a, b in chosen):
            chosen.append((float(x), float(y)))
    return chosen


@pytest.fixture(scope="module")
def twin(sample_engine, monkeypatch_module) -> Iterator[str]:  # noqa: F811
    """The real app on a real port with its job worker, quick webhook retries, tight limits."""
    monkeypatch_module.setenv("TWIN_WEBHOOK_RETRY_BASE_S", "0.5")
    monkeypatch_module.setenv("TWIN_WEBHOOK_RETRY_MAX_S", "1")
    settings = ServiceSettings(run_worker=True, report_limit_device="4/hour",
                               report_limit_address="1000/hour")
    with served(create_app(sample_engine, settings), start_s=30, stop_s=15) as url:
        yield url


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def post(client, fmt="json", **fields):
    return client.post(f"/open311/v2/requests.{fmt}", data=fields)
