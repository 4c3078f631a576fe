"""The local cluster (scripts/cluster.sh) as users meet it: through HAProxy, over two nodes,
a primary and a streaming replica, with real processes killed and stopped under load.

Slow (the cluster loads the sample: a few minutes on a busy machine); run alone with
``.venv/bin/python -m pytest tests/test_cluster.py -q``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from geo.database import create_engine
from geo.replicas import REBALANCE_S
from tests.tools import requires_tool, wait_until

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "cluster.sh"
TWIN = REPO / ".venv" / "bin" / "twin"

pytestmark = [pytest.mark.slow, requires_tool("haproxy", "/usr/sbin/haproxy"),
              requires_tool("mosquitto", "/usr/sbin/mosquitto"),
              requires_tool("nginx", "/usr/sbin/nginx"),
              requires_tool("redis-server", "/usr/bin/redis-server")]


def _ports_free(base: int) -> bool:
    for port in range(base, base + 13):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _free_base() -> int:
    """13 free ports in a row, below the range the kernel hands out to outgoing connections.

    The script binds them one after another over half a minute; in that range any other
    test's connection could take one meanwhile (nginx once found its port taken).
    """
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    start = 20000 + os.getpid() % 100 * 100
    for base in [*range(start, ephemeral - 13, 100), *range(20000, start, 100)]:
        if _ports_free(base):
            return base
    raise RuntimeError("no 13 free ports in a row below the ephemeral range")


class Cluster:
    def __init__(self, directory: Path, base: int) -> None:
        self.directory, self.base = directory, base
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        self.env.update(TWIN_CLUSTER_DIR=str(directory), TWIN_CLUSTER_PORT=str(base))
        self.address = f"http://127.0.0.1:{base}"
        self.node_a = f"http://127.0.0.1:{base + 11}"
        self.node_b = f"http://127.0.0.1:{base + 12}"
        self.nginx = f"http://127.0.0.1:{base + 6}"  # proxy_cache in front of HAProxy
        self.primary = create_engine(sa.engine.make_url(
            f"postgresql+psycopg://twin@127.0.0.1:{base + 1}/twin"), pool_size=1)
        self.replica = create_engine(sa.engine.make_url(
            f"postgresql+psycopg://twin@127.0.0.1:{base + 2}/twin"), pool_size=1)

    def script(self, action: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), action], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def pg_ctl(self, data: str, *args: str) -> None:
        pgbin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        command = [str(pgbin / "pg_ctl"), "-D", str(self.directory / data), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def node_pid(self, name: str) -> int:
        return int((self.directory / "run" / f"{name}.child").read_text())


@pytest.fixture(scope="module")
def cluster():
    # Not under pytest's own temporary directory, which only its owner may enter: as root,
    # PostgreSQL runs as another account.
    directory = Path(tempfile.mkdtemp(prefix="twin-cluster-"))
    os.chmod(directory, 0o755)
    running = Cluster(directory, _free_base())
    up = running.script("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"The twin is up at {running.address}/" in up.stdout
        yield running
    finally:
        running.script("down", timeout=120)
        running.primary.dispose()
        running.replica.dispose()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def crew_key(cluster) -> str:
    env = {**cluster.env, "TWIN_DATABASE_URL": str(cluster.primary.url.render_as_string(
        hide_password=False)).replace("+psycopg", "")}
    made = subprocess.run([str(TWIN), "keys", "create", "--role", "crew", "--name", "cluster-test"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def _parking(cluster) -> tuple[int, str]:
    with cluster.primary.connect() as conn:
        row = conn.execute(sa.text("SELECT id, external_id FROM parking ORDER BY id LIMIT 1")).one()
    return row.id, row.external_id


def _readers_on_replica(cluster) -> int:
    with cluster.replica.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE "
                                    "application_name = 'twin-reader'")).scalar_one()


def test_status_tells_every_part_running(cluster):
    status = cluster.script("status", timeout=60)
    assert status.returncode == 0
    for part in ("node-a", "node-b", "worker-1", "worker-2", "watcher-1", "watcher-2",
                 "mosquitto", "haproxy", "redis", "nginx"):
        assert f"{part}: running" in status.stdout
    assert "postgres replica: running" in status.stdout
    assert f"address: {cluster.address}/\n" in status.stdout


def test_a_reading_posted_to_node_a_is_in_an_item_of_node_b_within_2_s(cluster, crew_key):
    _wait_in_rotation(cluster)
    feature_id, external_id = _parking(cluster)
    value = 12.5 + (time.time() % 50)  # a value no earlier run left
    _post_occupancy(cluster, crew_key, external_id, value, via=cluster.node_a)
    written = time.monotonic()
    seen = None
    while time.monotonic() - written < 2.0:
        item = httpx.get(f"{cluster.node_b}/ogc/collections/parking/items/{feature_id}",
                         timeout=5)
        assert item.status_code == 200
        seen = item.json()["properties"]["occupancy_pct"]
        if seen == pytest.approx(value):
            break
        time.sleep(0.05)
    assert seen == pytest.approx(value), f"node B still shows {seen} 2 s after the write"
    # ... and node B reads from the replica, not only the primary. The first read after a change
    # may by design go to the primary (the replica had not replayed it within REPLAY_WAIT_S, which
    # a busy machine misses); its reader connections go back to the replica within REBALANCE_S.
    deadline = time.monotonic() + 3 * REBALANCE_S
    while _readers_on_replica(cluster) < 1 and time.monotonic() < deadline:
        httpx.get(f"{cluster.node_b}/ogc/collections/parking/items/{feature_id}", timeout=5)
        time.sleep(0.1)
    assert _readers_on_replica(cluster) >= 1, "node B never read from the replica"


def _loop(url: str, count: int, during=None, at: int = 0) -> list[tuple[int, bytes]]:
    """``count`` GETs of ``url`` one after another; ``during()`` is run before request ``at``."""
    answers = []
    with httpx.Client(timeout=30) as client:
        for n in range(count):
            if n == at and during is not None:
                during()
            try:
                response = client.get(url)
                answers.append((response.status_code, response.content))
            except httpx.HTTPError as error:
                answers.append((0, str(error).encode()))
    return answers


def test_killing_node_a_under_load_gives_no_failed_or_wrong_answer(cluster):
    feature_id, _ = _parking(cluster)
    url = f"{cluster.address}/ogc/collections/parking/items/{feature_id}"
    expected = httpx.get(url, timeout=30).content
    pid = cluster.node_pid("node-a")
    answers = _loop(url, 300, during=lambda: os.kill(pid, signal.SIGKILL), at=50)
    failures = [(status, body[:200]) for status, body in answers if status != 200]
    assert not failures, failures[:5]
    assert all(body == expected for _, body in answers)


def test_stopping_the_replica_moves_reads_to_the_primary_with_no_failed_request(cluster):
    feature_id, _ = _parking(cluster)
    url = f"{cluster.address}/ogc/collections/parking/items/{feature_id}"
    expected = httpx.get(url, timeout=30).content
    try:
        answers = _loop(url, 300, during=lambda: cluster.pg_ctl("replica", "-m", "fast", "-w",
                                                                   "stop"), at=50)
        after = _loop(url, 20)  # the replica is down: these come from the primary
        assert not _replica_state(cluster)["in_rotation"]
    finally:
        cluster.pg_ctl("replica", "-l", str(cluster.directory / "log" / "replica.log"), "-w",
                       "-o", f"-p {cluster.base + 2} -k {cluster.directory}/pgrun", "start")
    failures = [(status, body[:200]) for status, body in answers + after if status != 200]
    assert not failures, failures[:5]
    assert all(body == expected for _, body in answers + after)


def test_readiness_of_a_node_says_which_replicas_are_in_rotation(cluster):
    ready = httpx.get(f"{cluster.node_b}/readyz", timeout=10).json()
    assert json.dumps(ready)  # a JSON body
    assert ready["replicas"][0]["replica"].endswith(f":{cluster.base + 2}/twin")


def _post_occupancy(cluster, crew_key: str, external_id: str, value: float,
                    via: str | None = None) -> None:
    """A parking reading, through ``via`` (a node), by default HAProxy (node A may still be
    coming back from the test that killed it)."""
    observed = datetime.now(UTC).replace(microsecond=0).isoformat()
    posted = httpx.post(f"{via or cluster.address}/readings", headers={"X-API-Key": crew_key},
                        json=[{"asset_layer": "parking", "asset_external_id": external_id,
                               "metric": "occupancy_pct", "observed_at": observed,
                               "value": value}], timeout=30)
    assert posted.status_code == 200, posted.text


def _replica_state(cluster) -> dict:
    return httpx.get(f"{cluster.node_b}/readyz", timeout=10).json()["replicas"][0]


def _wait_in_rotation(cluster, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _replica_state(cluster)["in_rotation"]:
        time.sleep(0.2)
    assert _replica_state(cluster)["in_rotation"], _replica_state(cluster)


def test_a_replica_that_stops_replaying_serves_no_stale_read_and_leaves_rotation(
        cluster, crew_key):
    feature_id, external_id = _parking(cluster)
    _wait_in_rotation(cluster)  # after the test that stopped it
    with cluster.replica.connect() as conn:
        conn.execute(sa.text("SELECT pg_wal_replay_pause()"))
    try:
        value = 60 + (time.time() % 30)
        _post_occupancy(cluster, crew_key, external_id, value)
        written = time.monotonic()
        seen = None
        while time.monotonic() - written < 2.0:
            item = httpx.get(f"{cluster.node_b}/ogc/collections/parking/items/{feature_id}",
                             timeout=5)
            seen = item.json()["properties"]["occupancy_pct"]
            if seen == pytest.approx(value):
                break
            time.sleep(0.05)
        # The replica has not replayed the write: node B read it from the primary.
        assert seen == pytest.approx(value)
        with cluster.replica.connect() as conn:
            on_replica = conn.execute(sa.text(
                "SELECT occ.value FROM parking t JOIN LATERAL (SELECT r.value FROM readings r "
                "WHERE r.asset_id = t.id ORDER BY r.observed_at DESC LIMIT 1) occ ON TRUE "
                "WHERE t.id = :id"), {"id": feature_id}).scalar()
        assert on_replica != pytest.approx(value)
        # Beyond TWIN_REPLICA_MAX_LAG_S (5 s) behind, it leaves rotation.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "behind" not in _replica_state(cluster)["reason"]:
            time.sleep(0.2)
        state = _replica_state(cluster)
        assert not state["in_rotation"] and "behind" in state["reason"], state
    finally:
        with cluster.replica.connect() as conn:
            conn.execute(sa.text("SELECT pg_wal_replay_resume()"))
    _wait_in_rotation(cluster)


def test_a_reading_posted_through_the_balancer_is_in_a_tile_of_node_b_drawn_on_the_replica(
        cluster, crew_key):
    _wait_in_rotation(cluster)
    feature_id, external_id = _parking(cluster)
    with cluster.primary.connect() as conn:
        lon, lat = conn.execute(sa.text(
            "SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_PointOnSurface(geom) c FROM parking "
            "WHERE id = :id) p"), {"id": feature_id}).one()
    z = 16
    x = int((lon + 180) / 360 * 2 ** z)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2 ** z)
    url = f"{cluster.node_b}/tiles/parking/{z}/{x}/{y}.mvt"
    value = float(int(time.time()) % 40) + 40.5  # exact in a float32 and a float64
    encoded = (struct.pack("<d", value), struct.pack("<f", value))
    before = httpx.get(url, timeout=30)
    assert before.status_code == 200
    _post_occupancy(cluster, crew_key, external_id, value)
    written = time.monotonic()
    body = b""
    while time.monotonic() - written < 2.0:
        body = httpx.get(url, timeout=5).content
        if any(e in body for e in encoded):
            break
        time.sleep(0.05)
    assert any(e in body for e in encoded), "node B's tile lacks the new occupancy after 2 s"
    with cluster.replica.connect() as conn:
        drawn_here = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE "
                                          "application_name = 'twin-tiles'")).scalar_one()
    assert drawn_here >= 1  # node B's tile pool has connections on the replica


# -- tiles: the shared cache, versioned URLs behind nginx, Redis away; the alert stream ---------


def _tile_at(cluster, feature_id: int, z: int = 16) -> tuple[int, int, int]:
    """The z/x/y of the tile holding a parking feature."""
    with cluster.primary.connect() as conn:
        lon, lat = conn.execute(sa.text(
            "SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_PointOnSurface(geom) c FROM parking "
            "WHERE id = :id) p"), {"id": feature_id}).one()
    x = int((lon + 180) / 360 * 2 ** z)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2 ** z)
    return z, x, y


def _encoded(value: float) -> tuple[bytes, bytes]:
    """How a value is written in a tile (float64 or float32); values used are exact in both."""
    return struct.pack("<d", value), struct.pack("<f", value)


def _shared_cache(cluster):
    import redis

    return redis.Redis(host="127.0.0.1", port=cluster.base + 5, socket_timeout=5)


def _shared_key(etag: str) -> str:
    return "twin:twin:tile:parking:" + etag.strip('"')


def _expand(template: str, z: int, x: int, y: int) -> str:
    return template.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))


def _wait_up(node: str, timeout: float = 180) -> None:
    """Wait for a node to answer /readyz (a killed one is restarted by its supervisor)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{node}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{node} did not come back within {timeout} s")


def test_a_write_through_node_a_reaches_node_b_redis_cached_tile_within_1_s(cluster, crew_key):
    _wait_up(cluster.node_a)  # killed by an earlier test, restarted by its supervisor
    _wait_in_rotation(cluster)
    feature_id, external_id = _parking(cluster)
    z, x, y = _tile_at(cluster, feature_id)
    url = f"{cluster.node_b}/tiles/parking/{z}/{x}/{y}.mvt?properties=occupancy_pct"
    before = httpx.get(url, timeout=30)
    assert before.status_code == 200
    etag = before.headers["etag"]
    shared = _shared_cache(cluster)
    assert shared.exists(_shared_key(etag)), "node B's tile is not in the shared cache"
    value = 1.5
    _post_occupancy(cluster, crew_key, external_id, value, via=cluster.node_a)
    written = time.monotonic()
    # Node B hears of the change (the primary's NOTIFY) and stops answering the old tile: its
    # If-None-Match check is 304 until then, 200 with the new tile after.
    answer = httpx.get(url, headers={"If-None-Match": etag}, timeout=5)
    while answer.status_code == 304 and time.monotonic() - written < 1.0:
        time.sleep(0.02)
        answer = httpx.get(url, headers={"If-None-Match": etag}, timeout=5)
    assert answer.status_code == 200, "node B still answers the old tile 1 s after the write"
    # Never a tile of the new version drawn from the old data (the replica floor).
    assert any(e in answer.content for e in _encoded(value))
    assert answer.headers["etag"] != etag and shared.exists(_shared_key(answer.headers["etag"]))


def test_versioned_tiles_are_kept_by_nginx_and_a_write_makes_new_urls(cluster, crew_key):
    feature_id, external_id = _parking(cluster)
    z, x, y = _tile_at(cluster, feature_id)

    def template() -> str:
        tilejson = httpx.get(f"{cluster.nginx}/tiles/parking/tilejson.json",
                             params={"properties": "occupancy_pct"}, timeout=30)
        assert tilejson.headers["cache-control"] == "no-cache"
        return tilejson.json()["tiles"][0]

    old_template = template()
    assert old_template.startswith(f"{cluster.nginx}/tiles/parking/v")  # nginx's own address
    url = _expand(old_template, z, x, y)
    first = httpx.get(url, timeout=30)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    again = httpx.get(url, timeout=30)
    assert again.headers["x-cache-status"] == "HIT" and again.content == first.content
    # Unversioned tiles are revalidated by clients and never kept by nginx.
    plain = f"{cluster.nginx}/tiles/parking/{z}/{x}/{y}.mvt?properties=occupancy_pct"
    assert [httpx.get(plain, timeout=30).headers["x-cache-status"] for _ in range(2)] == \
        ["MISS", "MISS"]
    value = 2.5
    _post_occupancy(cluster, crew_key, external_id, value)
    deadline, new_template = time.monotonic() + 5, old_template
    while new_template == old_template and time.monotonic() < deadline:
        time.sleep(0.05)
        new_template = template()
    assert new_template != old_template, "TileJSON hands out the old version 5 s after a write"
    new = httpx.get(_expand(new_template, z, x, y), timeout=30)
    assert new.status_code == 200 and new.headers["x-cache-status"] == "MISS"
    assert new.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert any(e in new.content for e in _encoded(value))
    # The old URL names the old version: nginx keeps answering it from its cache, no purge.
    kept = httpx.get(url, timeout=30)
    assert kept.headers["x-cache-status"] == "HIT" and kept.content == first.content
    # Asked of a node, an old URL gets the current tile, cached briefly.
    at_node = httpx.get(url.replace(cluster.nginx, cluster.node_b), timeout=30)
    assert at_node.status_code == 200 and at_node.headers["cache-control"] == "public, max-age=30"
    assert any(e in at_node.content for e in _encoded(value))


def test_tiles_stay_right_with_redis_stopped(cluster, crew_key):
    for node in (cluster.node_a, cluster.node_b):
        _wait_up(node)
    feature_id, external_id = _parking(cluster)
    z, x, y = _tile_at(cluster, feature_id)
    shared = _shared_cache(cluster)
    pid = int((cluster.directory / "run" / "redis.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    try:
        value = 3.5
        _post_occupancy(cluster, crew_key, external_id, value)  # every cached tile is old now
        url = f"{cluster.address}/tiles/parking/{z}/{x}/{y}.mvt"
        answers = [httpx.get(url, timeout=30)]
        deadline = time.monotonic() + 5
        while not any(e in answers[-1].content for e in _encoded(value)) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
            answers.append(httpx.get(url, timeout=30))
        assert [a.status_code for a in answers] == [200] * len(answers)
        assert any(e in answers[-1].content for e in _encoded(value))
        # A tile no cache has seen, drawn with Redis away, on both nodes.
        for node in (cluster.node_a, cluster.node_b):
            fresh = httpx.get(f"{node}/tiles/parking/{z - 1}/{x // 2}/{y // 2}.mvt", timeout=30)
            assert fresh.status_code == 200 and any(e in fresh.content for e in _encoded(value))
        for name in ("node-a", "node-b"):
            log = (cluster.directory / "log" / f"{name}.log").read_text()
            assert log.count("is not answering") == 1, name  # once per outage, not per tile
    finally:
        subprocess.run(["redis-server", str(cluster.directory / "redis" / "redis.conf")],
                       check=True, capture_output=True, timeout=30)
    # Back: the nodes use it again once their retry interval has passed.
    etag, deadline = None, time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            fresh = httpx.get(f"{cluster.node_b}/tiles/parking/{z - 2}/{x // 4}/{y // 4}.mvt",
                              params={"limit": int(time.monotonic() * 10) % 9000 + 1},
                              timeout=30)
            etag = fresh.headers["etag"]
            if shared.exists(_shared_key(etag)):
                break
        except Exception:  # redis not accepting yet
            pass
        time.sleep(0.2)
    assert etag is not None and shared.exists(_shared_key(etag))


def _follow_alerts(address: str, received: list, nodes: list, stop: threading.Event,
                   connected: threading.Event) -> None:
    """An EventSource: follow the stream, and after a lost connection resume with Last-Event-ID."""
    last = None
    with httpx.Client(timeout=httpx.Timeout(30, read=20)) as http:
        while not stop.is_set():
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                with http.stream("GET", f"{address}/alerts/stream", headers=headers) as answer:
                    if answer.status_code == 200:
                        nodes.append(answer.headers.get("x-twin-node"))
                        connected.set()
                        event_id = None
                        for line in answer.iter_lines():
                            if line.startswith("id: "):
                                event_id = int(line[4:])
                            elif line.startswith("data: "):
                                received.append((event_id, json.loads(line[6:])))
                                last = event_id
                            if stop.is_set():
                                return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # EventSource waits the stream's `retry:` (3 s); shorter here


def test_the_alert_stream_resumes_on_another_node_with_nothing_lost_or_doubled(cluster):
    from geo.alerts import raise_alert

    with cluster.primary.connect() as conn:
        manholes = conn.execute(sa.text(
            "SELECT m.id, ST_AsEWKT(m.geom) AS ewkt FROM manholes m WHERE NOT EXISTS (SELECT 1 "
            "FROM alerts a WHERE a.asset_layer = 'manholes' AND a.asset_id = m.id) "
            "ORDER BY m.id LIMIT 9")).all()
    assert len(manholes) == 9
    raised: list[int] = []

    def raise_next() -> None:
        manhole = manholes[len(raised)]
        with cluster.primary.begin() as conn:
            alert_id, new = raise_alert(conn, kind="manhole_tilt", severity="high",
                                        asset_layer="manholes", asset_id=manhole.id,
                                        geom_ewkt=manhole.ewkt, reason="cluster stream test")
        assert new and alert_id is not None
        raised.append(alert_id)

    received: list[tuple[int, dict]] = []
    nodes: list[str] = []
    stop, connected = threading.Event(), threading.Event()
    follower = threading.Thread(target=_follow_alerts, daemon=True,
                                args=(cluster.address, received, nodes, stop, connected))
    for node in (cluster.node_a, cluster.node_b):
        _wait_up(node)  # so that the stream has another node to resume on
    follower.start()
    try:
        wait_until(connected.is_set, 30, what="the stream did not open through HAProxy")
        for _ in range(3):
            raise_next()
        wait_until(lambda: len(received) >= 3, 15, what="3 alerts to be received")
        first_node = nodes[0]
        assert first_node in ("a", "b")
        os.kill(cluster.node_pid(f"node-{first_node}"), signal.SIGKILL)
        for _ in range(4):  # while the client finds the other node
            raise_next()
        wait_until(lambda: len(nodes) >= 2, 30, what="the stream did not reconnect")
        for _ in range(2):
            raise_next()
        wait_until(lambda: {e["alert_id"] for _, e in received} >= set(raised), 30,
                   what=f"every alert of {raised} on the stream")
    finally:
        stop.set()
    assert nodes[1] != first_node  # resumed on the other node
    with cluster.primary.connect() as conn:
        expected = conn.execute(sa.text(
            "SELECT id FROM alert_events WHERE alert_id = ANY(:ids) ORDER BY id"),
            {"ids": raised}).scalars().all()
    # The cluster's own workers may raise alerts meanwhile (the schedule's refresh): the stream
    # carries theirs too. Every event arrives once and in order, and none of this test's is lost.
    ids = [event_id for event_id, _ in received]
    assert ids == sorted(set(ids)), ids
    assert [event_id for event_id, e in received if e["alert_id"] in raised] == expected
