"""Hostile input to the service (issue 17): refused with one sentence, nothing stored, no 500.

Each test starts from the exact input the probe used and asserts what a user sees (status
and sentence) and what the database holds afterwards.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from geo import alerts

PORT = 18201  # this helper's port range (18200-18249)
MB = 1024 * 1024


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def _open311_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and body[0]["code"] == status
    return body[0]["description"]


@pytest.fixture(scope="module")
def alert_id(sample_engine) -> int:
    with sample_engine.connect() as conn:
        manhole = conn.execute(sa.text(
            "SELECT id, ST_AsEWKT(geom) FROM manholes ORDER BY id LIMIT 1")).one()
    with sample_engine.begin() as conn:
        made, _ = alerts.raise_alert(
            conn, kind="manhole_tilt", severity="high", asset_layer="manholes",
            asset_id=manhole[0], geom_ewkt=manhole[1], reason="cover tilted 14 deg",
            details={})
    return made


# -- finding 3: limits before work -----------------------------------------------------------


def _chunks(total: int, size: int = 256 * 1024):
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("action", ["acknowledge", "start", "resolve", "dismiss"])
def test_large_alert_bodies_are_413_before_the_key_check(client, sample_engine, alert_id,
                                                         api_keys, action):
    events = _count(sample_engine, "alert_events")
    for headers in ({}, {"X-API-Key": api_keys["crew"]}):
        declared = client.post(f"/alerts/{alert_id}/{action}", content=b" " * (2 * MB),
                               headers={"Content-Type": "application/json", **headers})
        assert declared.status_code == 413
        assert declared.headers["content-type"] == "application/problem+json"
        assert declared.json()["detail"] == ("The body is 2,097,152 bytes; a request body on "
                                             "this route may hold at most 1,000,000 bytes.")
        streamed = client.post(f"/alerts/{alert_id}/{action}", content=_chunks(2 * MB),
                               headers={"Content-Type": "application/json", **headers})
        assert streamed.request.headers.get("transfer-encoding") == "chunked"
        assert streamed.status_code == 413
        assert streamed.json()["detail"] == ("The body is more than 1,000,000 bytes; a request "
                                             "body on this route may hold at most 1,000,000 "
                                             "bytes.")
    with sample_engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM alerts WHERE id = :id"),
                              {"id": alert_id}).scalar_one()
    assert status == "open"
    assert _count(sample_engine, "alert_events") == events


def test_open311_large_post_is_413_in_the_spec_format(client, sample_engine):
    before = _count(sample_engine, "service_requests")
    big = "service_code=pothole&description=" + "x" * 100_000
    assert _open311_error(client.post("/open311/v2/requests.json", content=big.encode(),
                                      headers={"Content-Type":
                                               "application/x-www-form-urlencoded"}), 413) \
        == "The body is 100,033 bytes; an Open311 post may hold at most 64,000 bytes."
    xml = client.post("/open311/v2/requests.xml", content=_chunks(200_000))
    assert xml.status_code == 413
    assert ET.fromstring(xml.content).find("error/description").text == (
        "The body is more than 64,000 bytes; an Open311 post may hold at most 64,000 bytes.")
    assert _count(sample_engine, "service_requests") == before


def test_small_bodies_still_work(client, alert_id, api_keys, sample_engine):
    answer = client.post(f"/alerts/{alert_id}/acknowledge", json={"note": "seen"},
                         headers={"X-API-Key": api_keys["crew"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["properties"]["status"] == "acknowledged"


# -- the running service: memory under 50 MB posts, and keys kept out of the access log -------


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _blind_post(port: int, path: str, total: int, *, chunked: bool) -> bytes:
    """POST ``total`` bytes the way a hostile client does: sending on whatever the answer is.

    A thread reads the answer while the body is still being sent, so that the answer is
    kept even when the server closes the connection under the sender.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    answer = bytearray()

    def read() -> None:
        try:
            while chunk := sock.recv(65536):
                answer.extend(chunk)
        except OSError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                 f"\r\n{length}\r\n\r\n".encode())
    piece = b" " * MB
    try:
        for _ in range(total // MB):
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked
                         else piece)
            if answer:
                break
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed the connection: it read no more of the body
    reader.join(timeout=30)
    sock.close()
    return bytes(answer)


@pytest.fixture(scope="module")
def served(sample_engine, tmp_path_factory):
    """``twin serve`` in a process of its own on this helper's port, its log in a file."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "TWIN_DATABASE_URL":
           sample_engine.url.render_as_string(hide_password=False)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("twin")), "serve", "--port", str(PORT)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        raise AssertionError(f"twin serve did not start: {log.read_text()[-2000:]}")
    yield process, log
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=20)


def test_50_mb_posts_without_a_key_cost_no_memory(served, alert_id, sample_engine):
    process, _ = served
    before = _rss_mb(process.pid)
    routes = [f"/alerts/{alert_id}/acknowledge", f"/alerts/{alert_id}/dismiss", "/readings",
              "/open311/v2/requests.json"]
    for path in routes:
        for chunked in (False, True):
            answer = _blind_post(PORT, path, 50 * MB, chunked=chunked)
            if path == "/readings" and chunked:
                # /readings checks the key before it reads a byte: no key, 401 at once.
                assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
                continue
            assert answer.startswith(b"HTTP/1.1 413 "), (path, chunked, answer[:300])
            assert b"may hold at most" in answer
    grown = _rss_mb(process.pid) - before
    assert grown < 100, f"the service grew by {grown:.0f} MB"
    with sample_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM alerts WHERE id = :id"),
                            {"id": alert_id}).scalar_one() != "dismissed"
    # The service still answers after the refused posts.
    assert httpx.get(f"http://127.0.0.1:{PORT}/healthz", timeout=5).status_code == 200
