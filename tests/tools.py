"""Programs the suite runs (GDAL's tools, Mosquitto, Chromium): found, or skipped, or failed.

Locally a missing program skips the tests that need it, with the reason. With ``CI=true`` in the
environment (as GitHub, GitLab and most CI services set it) it fails them instead, so a CI run
cannot pass without testing the exports, the sensor feed or the maps. The hook that decides is
``pytest_runtest_setup`` below, which tests/conftest.py takes in.
"""

import os
import shutil

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
