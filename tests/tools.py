"""Programs the suite runs (GDAL's tools, Mosquitto, Chromium): found, or skipped, or failed.

Locally a missing program skips the tests that need it, with the reason. With ``CI=true`` in the
environment (as GitHub, GitLab and most CI services set it) it fails them instead, so a CI run
cannot pass without testing the exports, the sensor feed or the maps. The hook that decides is
``pytest_runtest_setup`` in tests/conftest.py.
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
