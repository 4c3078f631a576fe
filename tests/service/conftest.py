"""Service fixtures: the sample twin behind the real app, in-process and on a real port.

``sample_engine`` (the module's copy of the sample twin) comes from tests/conftest.py.
"""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from geo import keys
from service.app import create_app
from service.settings import ServiceSettings
from tests.tools import served


@pytest.fixture(scope="module")
def api_keys(sample_engine) -> dict[str, str]:
    """One key per role: {role: key}."""
    made = {}
    with sample_engine.begin() as conn:
        for role in keys.ROLES:
            made[role] = keys.create_key(conn, name=f"test-{role}", role=role)
    return made


@pytest.fixture(scope="module")
def client(sample_engine) -> Iterator[TestClient]:
    """The app in-process (lifespan run), reading open."""
    with TestClient(create_app(sample_engine, ServiceSettings()),
                    raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def live_url(sample_engine) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, for real HTTP clients (GDAL...)."""
    with served(create_app(sample_engine, ServiceSettings())) as url:
        yield url
