"""Residents in the loop: /report without a key, chat-group intake, the living list, pushed
feedback to a webhook receiver that is down and comes back, and the abuse limits."""

import base64
import contextlib
import hashlib
import hmac
import json
import socket
import struct
import subprocess
import threading
import time
import zlib
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa

from geo import outbox
from service.app import create_app
from service.photos import photo_dir
from service.settings import ServiceSettings
from tests.service.conftest import api_keys  # noqa: F401
from tests.tools import find_tool, free_port, requires_tool, served, wait_until

HTTP = httpx.Client(timeout=120)  # the first triage trains the model: slow on a busy machine


def _png(padding: int = 0) -> bytes:
    """A real 2x2 PNG, made ``padding`` bytes larger by a text chunk (a phone's photo size)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    text = chunk(b"tEXt", b"Comment\x00" + b"x" * padding) if padding else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + text + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class Receiver:
    """A webhook receiver on a fixed port that can be down (not listening) and up."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[dict, dict]] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.append((dict(self.headers), {"raw": body}))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _wait(predicate, timeout: float = 40.0):
    return wait_until(predicate, timeout, interval_s=0.2)


def _street_point(engine, offset: int) -> tuple[float, float]:
    with engine.connect() as conn:
        x, y = conn.execute(sa.text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_LineInterpolatePoint(geom, 0.5) AS p, id "
            "FROM streets WHERE ST_GeometryType(geom) = 'ST_LineString' ORDER BY id "
            "OFFSET :o LIMIT 1) s"), {"o": offset}).one()
    return float(x), float(y)


def test_report_with_photo_reaches_open311_council_and_a_webhook_that_was_down(
        twin, api_keys, sample_engine):  # noqa: F811
    receiver = Receiver()  # down: nothing listens on its port yet
    made = HTTP.post(f"{twin}/webhooks", json={"url": receiver.url, "description": "bot"},
                      headers={"X-API-Key": api_keys["admin"]})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert HTTP.get(f"{twin}/webhooks").status_code == 401  # admin only

    page = HTTP.get(f"{twin}/report")
    assert page.status_code == 200 and "报告问题" in page.text and "路灯" in page.text
    assert "Report a problem" in HTTP.get(f"{twin}/report?lang=en").text
    lon, lat = _street_point(sample_engine, 40)
    phone = "13700001111"
    r = HTTP.post(f"{twin}/report", data={
        "description": f"路灯坏了，晚上很黑，电话{phone}", "lat": str(lat), "long": str(lon)},
        files={"photo": ("p.png", _png(), "image/png")}, headers={"X-Device-Id": "dev-a"})
    assert r.status_code == 201, r.text
    made = r.json()
    rid, token = made["service_request_id"], made["token"]
    assert (made["matter"], made["department"]) == ("big", "lighting")
    assert "street lighting" in made["responsible_party"]

    # In Open311, for anyone, with the phone number masked; and on the council list.
    got = HTTP.get(f"{twin}/open311/v2/requests/{rid}.json").json()[0]
    assert got["service_code"] == "other" and got["matter"] == "big"
    assert phone not in json.dumps(got) and "[phone removed]" in got["description"]
    listed = HTTP.get(f"{twin}/open311/v2/requests.json", params={"matter": "big"}).json()
    assert rid in {x["service_request_id"] for x in listed}
    assert all(x["matter"] == "big" for x in listed)
    small = HTTP.get(f"{twin}/open311/v2/requests.json", params={"matter": "small"}).json()
    assert rid not in {x["service_request_id"] for x in small}
    lines = HTTP.get(f"{twin}/council.json", params={"matter": "big"}).json()
    line = next(ln for ln in lines if int(rid) in ln["request_ids"])
    assert line["matter"] == "big" and line["status"] == "open" and line["requests"] >= 1
    assert str(rid) in HTTP.get(f"{twin}/council.csv").text
    assert "三事清单" in HTTP.get(f"{twin}/council").text
    with sample_engine.connect() as conn:
        photos = conn.execute(sa.text(
            "SELECT id, media_type, path FROM service_request_photos WHERE request_id = :r"),
            {"r": int(rid)}).all()
    assert [p.media_type for p in photos] == ["image/png"]
    viewer = {"X-API-Key": api_keys["viewer"]}
    photo_url = f"{twin}/report/photos/{photos[0].id}"
    assert HTTP.get(photo_url).status_code == 401  # never public
    assert HTTP.get(photo_url, headers=viewer).content == _png()
    kept = photo_dir() / photos[0].path  # a node without the shared photo folder: 409, no 500
    kept.rename(kept.with_name("away"))
    try:
        gone = HTTP.get(photo_url, headers=viewer)
        assert gone.status_code == 409 and "missing" in gone.json()["detail"]
    finally:
        kept.with_name("away").rename(kept)

    # Staff reply and settle it while the receiver is down.
    crew = {"X-API-Key": api_keys["crew"]}
    assert HTTP.post(f"{twin}/open311/v2/requests/{rid}/replies",
                      data={"text": "已派人检修，电话13911112222"}, headers=crew).status_code == 200
    assert HTTP.post(f"{twin}/open311/v2/requests/{rid}/status",
                      data={"status": "closed", "status_notes": "灯已修好"},
                      headers=crew).status_code == 200

    def pending_attempts():
        with sample_engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT max(attempts) FROM webhook_deliveries WHERE request_id = :r "
                "AND status = 'pending'"), {"r": int(rid)}).scalar()
    _wait(lambda: (pending_attempts() or 0) >= 1 or None)  # tried, failed, kept
    assert receiver.got == []
    time.sleep(2)  # a few more failed rounds
    receiver.up()
    try:
        def delivered():
            with sample_engine.connect() as conn:
                return conn.execute(sa.text(
                    "SELECT bool_and(status = 'delivered') FROM webhook_deliveries "
                    "WHERE request_id = :r"), {"r": int(rid)}).scalar()
        _wait(delivered)
    finally:
        receiver.down()
    mine = []
    for headers, body in receiver.got:
        raw = body["raw"]
        sign = hmac.new(secret.encode(), headers["X-Twin-Timestamp"].encode() + b"." + raw,
                        hashlib.sha256).hexdigest()
        assert headers["X-Twin-Signature"] == f"sha256={sign}"
        assert phone.encode() not in raw and b"13911112222" not in raw
        assert b"dev-a" not in raw
        payload = json.loads(raw)
        if payload["service_request_id"] == rid:
            mine.append((int(headers["X-Twin-Event"]), payload))
    kinds = [(p["kind"], p["status"]) for _, p in mine]
    assert kinds == [("status", "open"), ("reply", "open"), ("status", "closed")]
    assert [e for e, _ in mine] == sorted(e for e, _ in mine)  # in order
    assert mine[1][1]["note"] == "已派人检修，电话[phone removed]"

    # The reporter's page shows the status and the replies.
    status = HTTP.get(f"{twin}/report/status/{token}", params={"format": "json"}).json()
    assert status["status"] == "closed"
    assert [h["kind"] for h in status["history"]] == ["status", "reply", "status"]
    html = HTTP.get(f"{twin}/report/status/{token}").text
    assert "已办结" in html and "已派人检修" in html


class NotHttp:
    """A port that answers every connection with bytes that are not HTTP."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" * 3)


def test_a_broken_receiver_never_holds_up_the_others(twin, api_keys, sample_engine):  # noqa: F811
    admin = {"X-API-Key": api_keys["admin"]}
    for bad in ("http://127.0.0.1:80a/hook", "http://exa mple.cn/hook", "http:///hook"):
        refused = HTTP.post(f"{twin}/webhooks", json={"url": bad}, headers=admin)
        assert refused.status_code == 400 and "url" in refused.json()["detail"], bad
    not_http = NotHttp()
    with sample_engine.begin() as conn:  # as a row stored before URLs were checked could be
        outbox.add_subscription(conn, url="http://127.0.0.1:80a/hook", secret="s",
                                description="typo", created_by="test")
    assert HTTP.post(f"{twin}/webhooks", json={"url": not_http.url},
                     headers=admin).status_code == 201
    good = Receiver()
    assert HTTP.post(f"{twin}/webhooks", json={"url": good.url}, headers=admin).status_code == 201
    good.up()
    try:
        lon, lat = _street_point(sample_engine, 70)
        made = HTTP.post(f"{twin}/report", data={"description": "路灯不亮了", "lat": str(lat),
                                                 "long": str(lon)},
                         headers={"X-Device-Id": "webhook-check"})
        assert made.status_code == 201, made.text
        rid = made.json()["service_request_id"]
        _wait(lambda: any(json.loads(b["raw"])["service_request_id"] == rid
                          for _, b in good.got) or None)
    finally:
        good.down()
        not_http.sock.close()
    with sample_engine.connect() as conn:
        errors = conn.execute(sa.text(
            "SELECT s.url, d.status, d.attempts FROM webhook_deliveries d "
            "JOIN webhook_subscriptions s ON s.id = d.subscription_id WHERE d.request_id = :r"),
            {"r": int(rid)}).all()
    by_url = {url: (status, attempts) for url, status, attempts in errors}
    assert by_url[good.url][0] == "delivered"
    assert by_url["http://127.0.0.1:80a/hook"][0] == "pending"  # kept, tried again later
    assert by_url["http://127.0.0.1:80a/hook"][1] >= 1
    assert by_url[not_http.url][0] == "pending" and by_url[not_http.url][1] >= 1


def test_chat_messages_make_a_routed_request_then_a_plus_one(twin, api_keys, sample_engine):  # noqa: F811
    key = {"X-API-Key": api_keys["viewer"]}
    msg = {"group_id": "grp-cp-0004", "sender_id": "wx-li", "text": "2号门外路面塌陷了，很危险",
           "sent_at": datetime.now(UTC).isoformat()}
    assert HTTP.post(f"{twin}/intake/messages", json=msg).status_code == 401
    not_image = HTTP.post(f"{twin}/intake/messages", headers=key, json={
        **msg, "images": [base64.b64encode(b"GIF89a not allowed").decode()]})
    assert not_image.status_code == 400, not_image.text
    assert "images[1]" in not_image.json()["detail"]
    first = HTTP.post(f"{twin}/intake/messages", headers=key, json={
        **msg, "images": [base64.b64encode(_png()).decode()]})
    assert first.status_code == 201, first.text
    one = first.json()
    assert (one["outcome"], one["matter"], one["department"]) == ("new", "big", "roads")
    assert "Transport" in one["responsible_party"]
    assert one["located"].startswith("gate 2 of ")
    assert "收到" in one["reply"] and one["service_request_id"] in one["reply"]
    with sample_engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT count(*) FROM service_request_photos WHERE request_id = :r"),
            {"r": int(one["service_request_id"])}).scalar_one() == 1
    second = HTTP.post(f"{twin}/intake/messages", headers=key, json={
        **msg, "sender_id": "wx-wang", "text": "2号门外的路塌了一大块"})
    assert second.status_code == 201, second.text
    two = second.json()
    assert two["outcome"] == "plus_one"
    assert two["duplicate_of"] == one["service_request_id"]
    assert "+1" in two["reply"] and "共 1 人附议" in two["reply"]
    got = HTTP.get(f"{twin}/open311/v2/requests/{one['service_request_id']}.json").json()[0]
    assert got["supporters"] == 1
    assert "wx-li" not in json.dumps(got)
    # A small matter goes to the compound's manager.
    litter = HTTP.post(f"{twin}/intake/messages", headers=key, json={
        **msg, "sender_id": "wx-zhao", "text": "小区里垃圾桶满了，臭得很"}).json()
    assert litter["matter"] == "small" and litter["department"] == "sanitation"
    with sample_engine.connect() as conn:
        name = conn.execute(sa.text("SELECT name FROM compounds WHERE external_id = 'CP-0004'"
                                    )).scalar_one()
    assert litter["responsible_party"].startswith(name)
    lines = HTTP.get(f"{twin}/council.json", params={"compound": "CP-0004"}).json()
    assert {ln["matter"] for ln in lines} >= {"big", "small"}
    big = next(ln for ln in lines if int(one["service_request_id"]) in ln["request_ids"])
    assert big["supporters"] >= 1
    # A phone's 4 MB photo, which base64 makes 5.3 MB of JSON, is taken.
    photo = HTTP.post(f"{twin}/intake/messages", headers=key, json={
        **msg, "sender_id": "wx-sun", "text": "小区门口的井盖不见了",
        "images": [base64.b64encode(_png(4_000_000)).decode()]})
    assert photo.status_code == 201, photo.text[:300]
    bad = HTTP.post(f"{twin}/intake/messages", headers=key, json={**msg, "group_id": "nope"})
    assert bad.status_code == 400 and "group_id" in bad.json()["detail"]


def test_a_building_groups_message_is_placed_at_its_building_and_counted_there(
        twin, api_keys, sample_engine):  # noqa: F811
    key = {"X-API-Key": api_keys["viewer"]}
    house = "B-CP-0002-01"

    def open_matters() -> int:
        found = HTTP.get(f"{twin}/ogc/collections/buildings/items",
                         params={"filter": f"external_id='{house}'"}).json()["features"]
        assert len(found) == 1
        return found[0]["properties"]["open_requests"]

    before = open_matters()
    answer = HTTP.post(f"{twin}/intake/messages", headers=key, json={
        "group_id": "grp-b-cp-0002-01", "sender_id": "wx-chen", "text": "楼道里的灯坏了好几天了",
        "sent_at": datetime.now(UTC).isoformat()})
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["located"].startswith("building ")
    with sample_engine.connect() as conn:
        inside, compound = conn.execute(sa.text(
            "SELECT ST_Contains(b.geom, r.geom), c.external_id FROM service_requests r, "
            "buildings b JOIN compounds c ON c.id = b.compound_id "
            "WHERE r.id = :r AND b.external_id = :b"),
            {"r": int(made["service_request_id"]), "b": house}).one()
    assert inside and compound == "CP-0002"
    assert open_matters() == before + 1
    # Naming its own compound (whose name holds the street "Xinglong Lane") is not naming
    # that street: the message stays at the house.
    named = HTTP.post(f"{twin}/intake/messages", headers=key, json={
        "group_id": "grp-b-cp-0002-01", "sender_id": "wx-chen", "text":
        "Xinglong Lane Houses 1号楼的电梯坏了", "sent_at": datetime.now(UTC).isoformat()})
    assert named.status_code == 201, named.text
    assert named.json()["located"].startswith("building "), named.json()["located"]


def test_residents_read_times_on_the_deployments_clock(twin, api_keys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TWIN_TIMEZONE", "Asia/Shanghai")
    made = HTTP.post(f"{twin}/intake/messages", headers={"X-API-Key": api_keys["viewer"]}, json={
        "group_id": "grp-cp-0007", "sender_id": "wx-clock", "text": "路灯杆被车撞歪了",
        "sent_at": datetime.now(UTC).isoformat()})
    assert made.status_code == 201, made.text
    rid = made.json()["service_request_id"]
    expected = datetime.fromisoformat(HTTP.get(
        f"{twin}/open311/v2/requests/{rid}.json").json()[0]["expected_datetime"])
    local = expected.astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"{local.month}月{local.day}日 {local:%H:%M}" in made.json()["reply"]


def test_abuse_limits_hold(twin, sample_engine):
    lon, lat = _street_point(sample_engine, 90)
    device = {"X-Device-Id": "dev-flood"}
    statuses = []
    for n in range(8):  # bounded: the device's limit is 4 an hour in this app
        r = HTTP.post(f"{twin}/report", headers=device, data={
            "description": f"rubbish dumped by the road, pile {n}", "lat": str(lat + n * 1e-3),
            "long": str(lon)})
        statuses.append(r.status_code)
    assert statuses[:4] == [201] * 4 and set(statuses[4:]) == {429}, statuses
    refused = HTTP.post(f"{twin}/report", headers=device, data={"description": "x",
                                                                  "lat": str(lat),
                                                                  "long": str(lon)})
    assert refused.headers["content-type"] == "application/problem+json"
    other = {"X-Device-Id": "dev-photo"}
    not_image = HTTP.post(f"{twin}/report", headers=other, data={
        "description": "road collapse", "lat": str(lat), "long": str(lon)},
        files={"photo": ("x.png", b"<html>not a photo</html>", "image/png")})
    assert not_image.status_code == 400 and "JPEG, PNG or WebP" in not_image.json()["detail"]
    huge = HTTP.post(f"{twin}/report", headers=other, data={
        "description": "road collapse", "lat": str(lat), "long": str(lon)},
        files={"photo": ("x.jpg", b"\xff\xd8\xff\xe0" + b"\0" * (6 * 1024 * 1024),
                         "image/jpeg")})
    assert huge.status_code == 413
    nowhere = HTTP.post(f"{twin}/report", headers=other, data={"description": "streetlight"})
    assert nowhere.status_code == 400 and "compound" in nowhere.json()["detail"]
    with sample_engine.connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT count(*) FROM service_requests WHERE api_key_name LIKE 'report:device:dev-%' "
            "AND api_key_name <> 'report:device:dev-a'")).scalar_one()
    assert stored == 4  # the refused ones stored nothing
    # Open311 GET by district: a community's name keeps the requests in it, and only those.
    every = HTTP.get(f"{twin}/open311/v2/requests.json").json()
    community = next(r["community"] for r in every if r.get("community"))
    inside = HTTP.get(f"{twin}/open311/v2/requests.json", params={"district": community})
    assert inside.status_code == 200
    assert sorted(r["service_request_id"] for r in inside.json()) == sorted(
        r["service_request_id"] for r in every if r.get("community") == community)
    assert HTTP.get(f"{twin}/open311/v2/requests.json",
                    params={"district": "no such place"}).json() == []


@requires_tool("redis-server", "/usr/bin/redis-server")
def test_rate_limits_are_shared_by_every_process_through_redis(sample_engine, tmp_path):
    """Two service processes on one Redis: a device's limit holds across both."""
    port = free_port()
    redis = subprocess.Popen(
        [find_tool("redis-server", "/usr/bin/redis-server"), "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        settings = ServiceSettings(report_limit_device="3/hour",
                                   report_limit_address="1000/hour",
                                   rate_limit_storage=f"redis://127.0.0.1:{port}/0")
        with contextlib.ExitStack() as processes:
            urls = [processes.enter_context(served(create_app(sample_engine, settings),
                                                   start_s=60, stop_s=15)) for _ in range(2)]
            lon, lat = _street_point(sample_engine, 200)
            statuses = []
            for n in range(5):  # alternately to each process
                r = HTTP.post(f"{urls[n % 2]}/report", headers={"X-Device-Id": "dev-two"}, data={
                    "description": f"streetlight broken, lamp {n}", "lat": str(lat + n * 2e-3),
                    "long": str(lon)})
                statuses.append(r.status_code)
            assert statuses == [201, 201, 201, 429, 429], statuses
    finally:
        redis.terminate()
        redis.wait(timeout=10)
