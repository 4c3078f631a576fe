"""The suite's own rule for programs it runs: skipped locally when missing, failed under CI=true.

Each case runs pytest in a subprocess on a generated test module that uses tests/tools.py and
its hooks, as the exports, feed and browser modules do under tests/conftest.py.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import find_tool

ROOT = Path(__file__).parents[1]
# Without the plugins these runs do not use, each starts in a second instead of fifteen.
QUICK = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest",
         "-p", "no:anyio")
MODULE = """
from tests.tools import requires_tool

pytestmark = requires_tool({name!r}, "/nonexistent/{name}")


def test_runs_the_program():
    assert {expect_run}, "ran although the program is missing"
"""


def run_pytest(tmp_path: Path, name: str, *, ci: str | None, expect_run: bool):
    (tmp_path / "conftest.py").write_text(
        "from tests.tools import pytest_configure, pytest_runtest_setup  # noqa: F401\n")
    (tmp_path / "test_generated.py").write_text(MODULE.format(name=name, expect_run=expect_run))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-o", "addopts=", *QUICK, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_program_skips_locally_with_the_reason(tmp_path):
    result = run_pytest(tmp_path, "no-such-program-xyz", ci=None, expect_run=False)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "no-such-program-xyz is not installed (scripts/setup.sh test installs it)" in (
        result.stdout)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_program_fails_under_ci(tmp_path, ci):
    result = run_pytest(tmp_path, "no-such-program-xyz", ci=ci, expect_run=False)
    assert result.returncode == 1, result.stdout
    assert "CI=true and no-such-program-xyz is not installed" in result.stdout
    assert "ran although" not in result.stdout  # failed before the test body


def test_an_installed_program_runs_the_tests_under_ci(tmp_path):
    result = run_pytest(tmp_path, "sh", ci="true", expect_run=True)
    assert result.returncode == 0, result.stdout
    assert "1 passed" in result.stdout


def test_find_tool_looks_on_the_path_then_at_the_candidates(tmp_path):
    assert find_tool("sh") is not None
    program = tmp_path / "prog"
    program.write_text("")
    assert find_tool("no-such-program-xyz", "/nonexistent/x", str(program)) == str(program)
    assert find_tool("no-such-program-xyz", "/nonexistent/x") is None
