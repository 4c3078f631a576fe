"""Programs the suite runs (GDAL's tools, Mosquitto, Chromium): found, or skipped, or failed.

Locally a missing program skips the tests that need it, with the reason. With ``CI=true`` in the
environment (as GitHub, GitLab and most CI services set it) it fails them instead, so a CI run
cannot pass without testing the exports, the sensor feed or the maps. The hook that decides is
``pytest_runtest_setup`` below, which tests/conftest.py takes in.

Also the small helpers several test modules share: a free port, waiting for a condition with
a deadline, the app served by uvicorn on a real port, and reading a problem+json answer.
"""

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

STRICT = os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def find_tool(name: str, *candidates: str) -> str | None:
    """The path of the program ``name`` on PATH or at the first existing candidate, or None."""
    return shutil.which(name) or next((c for c in candidates if os.path.exists(c)), None)


def requires_tool(name: str, *candidates: str) -> pytest.MarkDecorator:
    """Mark tests that run the program ``name`` (on PATH or at one of ``candidates``)."""
    return pytest.mark.requires_tool(name=name, found=find_tool(name, *candidates))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "requires_tool(name, found): runs an installed program (tests/tools.py)"
    )


@pytest.hookimpl(tryfirst=True)  # before any fixture is set up for a test that cannot run
def pytest_runtest_setup(item):
    for mark in item.iter_markers("requires_tool"):
        if mark.kwargs["found"] is None:
            reason = f"{mark.kwargs['name']} is not installed (scripts/setup.sh test installs it)"
            if STRICT:
                pytest.fail(f"CI=true and {reason}", pytrace=False)
            pytest.skip(reason)


def problem_of(response, status: int) -> dict:
    """The body of ``response``, once it is a problem+json answer with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


def free_port() -> int:
    """A loopback TCP port free at the time of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout_s: float, *, interval_s: float = 0.05,
               what: str = "the condition") -> Any:
    """``predicate()``'s first true value, asked every ``interval_s`` until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@contextmanager
def served(app, *, start_s: float = 20.0, stop_s: float = 10.0) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free loopback port: its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, start_s, what="the service to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=stop_s)
