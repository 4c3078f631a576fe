"""Map fixtures: the sample twin behind the real app, in-process and on a real port."""

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import ServiceSettings
from tests.service.conftest import _free_port, api_keys, sample_engine  # noqa: F401


def maps_app(engine):
    """The real app, as `twin serve` builds it."""
    return create_app(engine, ServiceSettings())


@pytest.fixture(scope="module")
def maps_client(sample_engine) -> Iterator[TestClient]:  # noqa: F811
    with TestClient(maps_app(sample_engine), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def maps_live_url(sample_engine) -> Iterator[str]:  # noqa: F811
    """Like tests/service's ``live_url``."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(maps_app(sample_engine), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the service did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
