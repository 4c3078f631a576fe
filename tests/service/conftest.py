"""Service fixtures: the sample twin behind the real app, in-process and on a real port.

``sample_engine`` (the module's copy of the sample twin) comes from tests/conftest.py.
"""

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient

from geo import keys
from service.app import create_app
from service.settings import ServiceSettings


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_url(sample_engine) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, for real HTTP clients (GDAL...)."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(sample_engine, ServiceSettings()),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the service did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
