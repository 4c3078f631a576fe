"""Hostile input to the service (issue 17): refused with one sentence, nothing stored, no 500.

Each test starts from the exact input the probe used and asserts what a user sees (status
and sentence) and what the database holds afterwards.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
import sqlalchemy as sa

from geo import alerts
from tests.tools import free_port, wait_until

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


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory now (VmRSS) or at its peak so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field}")


def _answer_complete(answer: bytes | bytearray) -> bool:
    """Whether ``answer`` holds a whole HTTP response: its head and all of its body."""
    head, blank, body = bytes(answer).partition(b"\r\n\r\n")
    if not blank:
        return False
    length = re.search(rb"(?im)^content-length:[ \t]*(\d+)", head)
    if length:
        return len(body) >= int(length.group(1))
    if re.search(rb"(?im)^transfer-encoding:[ \t]*chunked", head):
        return body.endswith(b"0\r\n\r\n")
    return False  # a body that ends when the connection does


def _blind_post(port: int, path: str, total: int, *, chunked: bool,
                method: str = "POST") -> bytes:
    """Send ``total`` bytes the way a hostile client does: on, whatever the answer is.

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
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
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
    # A server that answered may keep the connection open for more: the answer is in once
    # its head and as many bytes of body as the head declares have come.
    deadline = time.monotonic() + 30
    while not _answer_complete(answer) and reader.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    sock.close()
    reader.join(timeout=5)
    return bytes(answer)


class Served(NamedTuple):
    process: subprocess.Popen
    log: Path
    port: int


@pytest.fixture(scope="module")
def served(sample_engine, tmp_path_factory) -> Iterator[Served]:
    """``twin serve`` in a process of its own on a free port, its log in a file."""
    # A free port, not a fixed one: other test workers and checkouts on this machine serve too.
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "TWIN_DATABASE_URL":
           sample_engine.url.render_as_string(hide_password=False)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            # No job worker: its models would grow the process whatever the HTTP side does.
            [str(Path(sys.executable).with_name("twin")), "serve", "--port", str(port),
             "--no-worker"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 60, interval_s=0.3, what="twin serve to start")
    except AssertionError:
        process.kill()
        raise AssertionError(f"twin serve did not start: {log.read_text()[-2000:]}") from None
    yield Served(process, log, port)
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=20)


def test_50_mb_posts_without_a_key_cost_no_memory(served, alert_id, sample_engine):
    process, port = served.process, served.port
    before = _rss_mb(process.pid)
    routes = [f"/alerts/{alert_id}/acknowledge", f"/alerts/{alert_id}/dismiss", "/readings",
              "/open311/v2/requests.json"]
    for path in routes:
        for chunked in (False, True):
            answer = _blind_post(port, path, 50 * MB, chunked=chunked)
            if path == "/readings" and chunked:
                # /readings checks the key before it reads a byte: no key, 401 at once.
                assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
                continue
            assert answer.startswith(b"HTTP/1.1 413 "), (path, chunked, answer[:300])
            assert b"may hold at most" in answer
    grown = _rss_mb(process.pid) - before
    print(f"twin serve RSS {before:.0f} MB before, grew {grown:+.0f} MB over 8 posts of 50 MB")
    assert grown < 100, f"the service grew by {grown:.0f} MB"
    with sample_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM alerts WHERE id = :id"),
                            {"id": alert_id}).scalar_one() != "dismissed"
    # The service still answers after the refused posts.
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


@pytest.mark.slow
def test_20_clients_without_keys_posting_100_mb_to_every_write_route(served, alert_id,
                                                                     sample_engine):
    process, port = served.process, served.port
    spec = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=10).json()
    # Every route that takes a body, its path parameters filled with the alert's id.
    routes = sorted({(method.upper(), re.sub(r"\{[^}]+\}", str(alert_id),
                                             path.replace("{fmt}", "json")))
                     for path, methods in spec["paths"].items()
                     for method in set(methods) & {"post", "put", "patch"}})
    assert len(routes) >= 8, routes
    answers: list[tuple[str, bytes]] = []

    def client(number: int) -> None:
        for method, path in routes:
            # Half the clients declare the length (refused on the header), half stream chunks.
            answers.append((path, _blind_post(port, path, 100 * MB, chunked=number % 2 == 0,
                                              method=method)))

    clients = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=300)
    peak = _rss_mb(process.pid, "VmHWM")
    print(f"twin serve peak RSS {peak:.0f} MB after {len(answers)} posts of 100 MB "
          f"to {len(routes)} routes by 20 clients")
    assert len(answers) == 20 * len(routes)
    for path, answer in answers:
        status = answer[9:12]
        # Refused for size or for the missing key; nothing taken, no server error. The
        # residents' /report needs no key: a JSON body (not its multipart form) is refused
        # with 400 before a byte of it is read.
        refusals = (b"413", b"401", b"403") + ((b"400",) if path == "/report" else ())
        assert status in refusals, (path, answer[:300])
    assert peak < 500, f"the service peaked at {peak:.0f} MB"
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    with sample_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM alerts WHERE id = :id"),
                            {"id": alert_id}).scalar_one() != "dismissed"


# -- finding 4: no 500 for input in Open311 -------------------------------------------------


def _street_point(engine, order: str) -> tuple[float, float]:
    with engine.connect() as conn:
        lon, lat = conn.execute(sa.text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_LineInterpolatePoint(geom, 0.5) AS p "
            "FROM streets WHERE ST_GeometryType(geom) = 'ST_LineString' ORDER BY id "
            f"{order} LIMIT 1) s")).one()
    return float(lon), float(lat)


@pytest.fixture(scope="module")
def place(sample_engine) -> tuple[float, float]:
    """A point on a street of the sample (lon, lat), where requests are taken."""
    return _street_point(sample_engine, "DESC")


@pytest.fixture(scope="module")
def other_place(sample_engine) -> tuple[float, float]:
    """A point on another street, far from ``place``: a request there joins none of those."""
    return _street_point(sample_engine, "ASC")


@pytest.mark.parametrize("name,value", [("start_date", "9999-12-31"),
                                        ("end_date", "0001-01-01"),
                                        ("start_date", "9999-12-31T23:59:59-12:00")])
def test_open311_far_dates_are_400(client, name, value):
    for fmt in ("json", "xml"):
        answer = client.get(f"/open311/v2/requests.{fmt}", params={name: value})
        assert answer.status_code == 400, answer.text
    assert _open311_error(client.get("/open311/v2/requests.json", params={name: value}),
                          400) == (f"{name} {value} is out of range; dates from 1970-01-01 "
                                   f"to 2199-12-31 are served.")


@pytest.mark.parametrize("field", ["service_code", "description", "first_name",
                                   "address_string", "media_url"])
def test_open311_nul_in_a_posted_field_is_400(client, sample_engine, api_keys, place, field):
    lon, lat = place
    form = {"api_key": api_keys["viewer"], "service_code": "other", "lat": lat, "long": lon,
            "description": "broken bench", "first_name": "Li", "address_string": "gate 3",
            "media_url": "https://example.org/a.jpg"}
    form[field] = form[field] + "\x00x"
    before = (_count(sample_engine, "service_requests"),
              _count(sample_engine, "service_request_contacts"))
    for fmt in ("json", "xml"):
        answer = client.post(f"/open311/v2/requests.{fmt}", data=form)
        assert answer.status_code == 400, answer.text
    assert _open311_error(client.post("/open311/v2/requests.json", data=form), 400) == (
        f"{field} holds a control character (U+0000), which is not allowed.")
    xml = client.post("/open311/v2/requests.xml", data=form)
    assert ET.fromstring(xml.content).find("error/description").text.startswith(field)
    assert (_count(sample_engine, "service_requests"),
            _count(sample_engine, "service_request_contacts")) == before


def test_open311_control_characters_and_lengths(client, api_keys, place, sample_engine):
    lon, lat = place
    form = {"api_key": api_keys["viewer"], "service_code": "other", "lat": lat, "long": lon,
            "description": "broken bench"}
    before = _count(sample_engine, "service_requests")
    assert _open311_error(client.post("/open311/v2/requests.json", data={
        **form, "first_name": "Li\x1b[31m"}), 400) == (
        "first_name holds a control character (U+001B), which is not allowed.")
    assert _open311_error(client.post("/open311/v2/requests.json", data={
        **form, "address_string": "gate\n3"}), 400).startswith("address_string holds")
    assert _open311_error(client.post("/open311/v2/requests.json", data={
        **form, "media_url": "https://example.org/" + "a" * 3000}), 400) == (
        "media_url is 3,020 characters; at most 2,000 are allowed.")
    assert _count(sample_engine, "service_requests") == before
    # Newlines and tabs are welcome in a description.
    taken = client.post("/open311/v2/requests.json", data={
        **form, "description": "broken bench\n\tnear the gate"})
    assert taken.status_code == 200, taken.text
    assert _count(sample_engine, "service_requests") == before + 1


def test_open311_nul_in_token_service_and_query(client):
    assert _open311_error(client.get("/open311/v2/tokens/ab%00cd.json"), 400) == (
        "The token holds a control character (U+0000), which is not allowed.")
    assert _open311_error(client.get("/open311/v2/requests.json",
                                     params={"service_code": "pothole\x00"}), 400) == (
        "service_code holds a control character (U+0000), which is not allowed.")
    missing = client.get("/open311/v2/services/pot%00hole.xml")
    assert missing.status_code == 404
    assert ET.fromstring(missing.content).find("error/description").text == (
        "There is no service 'pot\\x00hole'.")


def _a_request(client, api_keys, place, description="bench") -> str:
    lon, lat = place
    made = client.post("/open311/v2/requests.json", data={
        "api_key": api_keys["viewer"], "service_code": "other", "lat": lat, "long": lon,
        "description": f"{description} {time.monotonic_ns()}"})
    assert made.status_code == 200, made.text
    return made.json()[0]["service_request_id"]


def test_open311_nul_in_status_notes_and_classification_note(client, api_keys, place,
                                                             sample_engine):
    rid = _a_request(client, api_keys, place)
    with sample_engine.connect() as conn:
        before = conn.execute(sa.text("SELECT status, status_notes, matter FROM "
                                      "service_requests WHERE id = :id"), {"id": rid}).one()
    assert _open311_error(client.post(f"/open311/v2/requests/{rid}/status", data={
        "api_key": api_keys["crew"], "status": "closed", "status_notes": "done\x00"}), 400) == (
        "status_notes holds a control character (U+0000), which is not allowed.")
    assert _open311_error(client.post(f"/open311/v2/requests/{rid}/classification", json={
        "api_key": api_keys["planner"], "matter": "big", "note": "\x00"}), 400) == (
        "note holds a control character (U+0000), which is not allowed.")
    assert _open311_error(client.post(f"/open311/v2/requests/{rid}/classification", data={
        "api_key": api_keys["planner"], "matter": "big", "note": "n" * 4001}), 400) == (
        "note is 4,001 characters; at most 4,000 are allowed.")
    with sample_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status, status_notes, matter FROM "
                                    "service_requests WHERE id = :id"), {"id": rid}).one() \
            == before


# -- finding 5: privacy by pattern -----------------------------------------------------------


def test_personal_numbers_masked_in_every_public_text(client, api_keys, other_place,
                                                      sample_engine):
    phone, landline, email, id_card = ("13700001111", "(0916) 321-2345", "li.wei@example.cn",
                                       "61092419800101123X")
    lon, lat = other_place
    made = client.post("/open311/v2/requests.json", data={
        "api_key": api_keys["viewer"], "service_code": "other", "lat": lat, "long": lon,
        "address_string": f"near gate, tel {phone}",
        "description": f"bench broken, mail {email} or call {landline}, ID {id_card}, "
                       f"since 2026-01-15; ref {time.monotonic_ns()}"})
    assert made.status_code == 200, made.text
    rid = made.json()[0]["service_request_id"]
    closed = client.post(f"/open311/v2/requests/{rid}/status", data={
        "api_key": api_keys["crew"], "status": "closed",
        "status_notes": f"fixed; resident on +86 137-0000-1111 told, copy to {email}"})
    assert closed.status_code == 200, closed.text
    bodies = [closed.content]
    for path in (f"/open311/v2/requests/{rid}.json", f"/open311/v2/requests/{rid}.xml",
                 f"/open311/v2/requests.json?service_request_id={rid}",
                 "/open311/v2/requests.json", "/open311/v2/requests.xml"):
        answer = client.get(path)
        assert answer.status_code == 200, answer.text
        bodies.append(answer.content)
    for body in bodies:
        for secret in (phone, "321-2345", email, id_card, "137-0000-1111"):
            assert secret.encode() not in body
    entry = client.get(f"/open311/v2/requests/{rid}.json").json()[0]
    assert entry["address"] == "near gate, tel [phone removed]"
    assert entry["description"].startswith(
        "bench broken, mail [e-mail removed] or call [phone removed], ID [ID number removed], "
        "since 2026-01-15; ref ")
    assert entry["status_notes"] == ("fixed; resident on [phone removed] told, copy to "
                                     "[e-mail removed]")
    xml = ET.fromstring(client.get(f"/open311/v2/requests/{rid}.xml").content)
    assert xml.find("request/address").text == "near gate, tel [phone removed]"
    # Stored as typed: staff can still call back through the contact fields and the table.
    with sample_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT address_string FROM service_requests WHERE id = :id"),
                            {"id": rid}).scalar_one() == f"near gate, tel {phone}"


# -- finding 7: secrets never logged ---------------------------------------------------------


def test_key_in_a_query_string_is_not_in_the_access_log(served, api_keys):
    log, port = served.log, served.port
    key = api_keys["admin"]
    answer = httpx.get(f"http://127.0.0.1:{port}/open311/v2/requests.json",
                       params={"api_key": key, "status": "open"}, timeout=10)
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 5
    while "requests.json" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert "/open311/v2/requests.json?api_key=[redacted]&status=open" in text
    assert key not in text
