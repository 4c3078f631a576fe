"""The ``twin`` command as a user runs it: a real process, real exit codes, real output."""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from geo import migrate
from geo.cluster import EmbeddedCluster

TWIN = str(Path(sys.executable).parent / "twin")


def run(*args, home: Path, timeout=120, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    environment.update({"TWIN_HOME": str(home), "COLUMNS": "200", **env})
    if "TWIN_CLUSTER_USER" in os.environ:
        environment["TWIN_CLUSTER_USER"] = os.environ["TWIN_CLUSTER_USER"]
    return subprocess.run(
        [TWIN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def home(tmp_path) -> Iterator[Path]:
    """A TWIN_HOME of the test's own, whose embedded cluster (if a command made one) is deleted.

    Run as root, a cluster's files lie under /var/lib/twin/clusters (the postgres account
    cannot reach tmp_path), where the removal of tmp_path does not reach: stopping it would
    leave some 70 MB behind for every run of the suite.
    """
    home = tmp_path / "home"
    yield home
    if (home / "postgres").is_symlink() or (home / "postgres").exists():
        EmbeddedCluster(home, os.environ.get("TWIN_CLUSTER_USER", "postgres")).destroy()


def test_help_lists_the_commands(tmp_path):
    result = run("--help", home=tmp_path)
    assert result.returncode == 0
    for command in ("db", "sample"):
        assert command in result.stdout


@pytest.mark.slow
def test_db_start_status_stop(home):
    started = run("db", "start", home=home)
    assert started.returncode == 0, started.stderr
    assert "Started" in started.stdout
    again = run("db", "start", home=home)
    assert again.returncode == 0 and "Already running" in again.stdout

    status = run("db", "status", home=home)
    assert status.returncode == 0, status.stderr
    assert "running" in status.stdout
    assert "PostGIS" in status.stdout and "3." in status.stdout

    migrated = run("db", "migrate", home=home)
    assert migrated.returncode == 0 and migrate.head_revision() in migrated.stdout

    # Reset deletes the twin's data (a key made before it is gone) and leaves an empty schema.
    assert run("keys", "create", "--role", "viewer", "--name", "before-reset",
               home=home).returncode == 0
    reset = run("db", "reset", "--yes", home=home)
    assert reset.returncode == 0, reset.stderr
    assert "Reset:" in reset.stdout and migrate.head_revision() in reset.stdout
    listed = run("keys", "list", home=home)
    assert listed.returncode == 0 and "before-reset" not in listed.stdout

    stopped = run("db", "stop", home=home)
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    after = run("db", "status", home=home)
    assert after.returncode == 3 and "stopped" in after.stdout


def test_unreachable_database_url_is_one_clear_sentence(tmp_path):
    result = run(
        "db", "migrate", home=tmp_path, TWIN_DATABASE_URL="postgresql://twin:pw@127.0.0.1:1/twin"
    )
    assert result.returncode == 1
    assert (
        "Cannot connect to the database postgresql+psycopg://twin:***@127.0.0.1:1/twin"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_embedded_commands_refuse_an_external_url(tmp_path):
    result = run("db", "stop", home=tmp_path, TWIN_DATABASE_URL="postgresql://x@127.0.0.1:1/y")
    assert result.returncode == 1 and "unset it" in result.stderr


def test_reset_without_confirmation_is_refused(tmp_path):
    result = run("db", "reset", home=tmp_path)
    assert result.returncode == 1 and "--yes" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a directory to another account")
def test_data_directory_owned_by_someone_else(tmp_path):
    data = tmp_path / "postgres" / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    os.chown(data, 65534, 65534)
    result = run("db", "start", home=tmp_path)
    assert result.returncode == 1
    assert "belongs to 'nobody'" in result.stderr and "Traceback" not in result.stderr


def test_output_is_not_wrapped_when_not_a_terminal(tmp_path, engine):
    # Captured output (logs, CI, pipes) keeps long paths and sentences on one line.
    folder = tmp_path / ("a-rather-long-directory-name-for-a-county-" * 2)
    folder.mkdir()
    path = folder / "manholes-of-the-whole-county.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", '
                    '"properties": {"external_id": "M1", "kind": "sewer"}, '
                    '"geometry": {"type": "Point", "coordinates": [108.54, 32.52]}}]}')
    # On the module's database: the embedded one would cost a cluster's set-up for one line.
    result = run("ingest", "manholes", str(path), "--dry-run", home=tmp_path / "home",
                 COLUMNS="", TWIN_DATABASE_URL=engine.url.render_as_string(hide_password=False))
    assert result.returncode == 0, result.stderr
    assert f"Dry run of manholes from {path}" in result.stdout.splitlines()[0]


def test_serve_hands_a_database_url_option_to_its_workers(engine, tmp_path, home):
    # uvicorn's workers build the app from TWIN_* variables: a URL given as --database-url
    # (none in the environment) must reach them, or they would serve the embedded database.
    from geo import keys

    with engine.begin() as conn:
        key = keys.create_key(conn, name="cli-serve-test", role="admin")
    port = 20150  # this helper's port range (20100-20199)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    environment.update({"TWIN_HOME": str(home), "TWIN_LANGUAGE": "en"})
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TWIN, "--database-url", engine.url.render_as_string(hide_password=False),
             "serve", "--port", str(port), "--no-worker"],
            env=environment, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        answer = None
        for _attempt in range(300):  # until the server is up, or the process has ended
            if process.poll() is not None:
                break
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/webhooks",
                                   headers={"X-API-Key": key}, timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert answer is not None, log.read_text()[-2000:]
        # The key exists only in the database the option named.
        assert answer.status_code == 200, (answer.status_code, answer.text)
        assert not (home / "postgres").exists()  # no embedded cluster was made
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_keys_and_metrics_are_listed_and_an_unreachable_database_is_one_line(engine, monkeypatch):
    # In process (typer's runner): the same commands, without a process start for each.
    from typer.testing import CliRunner

    from service.cli import app

    monkeypatch.setenv("TWIN_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "--role", "crew", "--name", "north-crew"])
    assert made.exit_code == 0, made.output
    key = made.output.strip().splitlines()[-1]
    assert key.startswith("twin_")
    assert runner.invoke(app, ["keys", "revoke", "north-crew"]).exit_code == 0
    listed = runner.invoke(app, ["keys", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if "north-crew" in line)
    created, revoked = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", row)
    assert " crew " in row and key[:9] in row and revoked >= created
    assert key not in listed.output  # never the key itself

    metrics = runner.invoke(app, ["metrics", "list"], env={"COLUMNS": "200"})
    assert metrics.exit_code == 0, metrics.output
    pci = next(line for line in metrics.output.splitlines() if " pci " in line)
    assert [cell.strip() for cell in pci.split("│")[1:5]] == ["pci", "PCI", "0", "100"]
    assert "higher" in pci

    monkeypatch.setenv("TWIN_DATABASE_URL", "postgresql://twin:pw@127.0.0.1:1/twin")
    for command in (["keys", "list"], ["metrics", "list"]):
        failed = runner.invoke(app, command)
        assert failed.exit_code == 1 and "Cannot connect to the database" in failed.output
        assert "Traceback" not in failed.output and len(failed.output.strip().splitlines()) == 1


def test_a_mistyped_layer_or_path_is_answered_before_any_database_starts(tmp_path, home):
    (tmp_path / "streets.gpkg").write_bytes(b"")
    for args, message in ((["lamps", str(tmp_path / "streets.gpkg")], "Unknown layer 'lamps'"),
                          (["streets", str(tmp_path / "nothere.gpkg")], "does not exist")):
        result = run("ingest", *args, home=home)
        assert result.returncode == 2 and message in result.stderr
        assert "Traceback" not in result.stderr
    assert not home.exists()  # no embedded cluster was made (nor started) to say so


def test_an_error_naming_a_mappings_table_is_printed_whole(capsys):
    # "[metrics]" is a TOML table to a user, and markup to rich: it must print as written.
    from geo.errors import InvalidInput
    from service.cli.common import fail

    exit_ = fail(InvalidInput("Mapping m.toml: [metrics] must map column stems to twin metrics."))
    assert exit_.exit_code == 2
    assert "Mapping m.toml: [metrics] must map" in capsys.readouterr().err
