"""The service outlives its database: 503 with Retry-After while it is away, then recovers."""

import os

import pytest
from fastapi.testclient import TestClient

from geo import migrate
from geo.cluster import EmbeddedCluster
from geo.database import create_engine
from service.app import create_app


@pytest.fixture
def own_cluster(tmp_path):
    cluster = EmbeddedCluster(tmp_path / "home", os.environ.get("TWIN_CLUSTER_USER", "postgres"))
    cluster.start()
    yield cluster
    cluster.destroy()


def test_requests_get_503_while_the_database_is_away_and_succeed_once_it_is_back(own_cluster):
    engine = create_engine(own_cluster.url)
    migrate.upgrade(engine)
    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/ogc/collections/streets/items").status_code == 200

        own_cluster.stop()
        for path in ("/readyz", "/ogc/collections/streets/items", "/alerts",
                     "/tiles/streets/14/13130/6610.mvt"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["retry-after"] == "5"
            assert response.headers["content-type"] == "application/problem+json"

        own_cluster.start()
        assert client.get("/readyz").status_code == 200
        assert client.get("/ogc/collections/streets/items").status_code == 200
        assert client.get("/alerts").status_code == 200
    engine.dispose()
