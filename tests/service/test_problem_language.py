"""Problem details speak the request's language: ?lang=, Accept-Language, TWIN_LANGUAGE."""

import re

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import ServiceSettings

CJK = re.compile(r"[\u3400-\u9fff]")
# Bad requests a user can make, each refused with a problem+json answer.
BAD = ("/alerts/987654321", "/tiles/streets/14/0/0.mvt?limit=0",
       "/ogc/collections/streets/items?bbox=1,2,3", "/ogc/collections/nope",
       "/alerts?severity=huge", "/ogc/collections/streets/items?datetime=2026-13-01",
       "/ogc/collections/streets/items/abc", "/exports/streets.xlsx")


def test_problems_in_chinese_and_english(client):
    for path in BAD:
        sep = "&" if "?" in path else "?"
        chinese = client.get(f"{path}{sep}lang=zh")
        assert chinese.headers["content-type"].startswith("application/problem+json"), path
        body = chinese.json()
        assert CJK.search(body["title"]) and CJK.search(body["detail"]), (path, body)
        assert chinese.headers["content-language"] == "zh-Hans"
        english = client.get(path, headers={"Accept-Language": "en"}).json()
        assert english["status"] == body["status"]
        assert not CJK.search(english["title"] + english["detail"]), (path, english)
    assert client.get("/alerts/987654321", headers={"Accept-Language": "zh-CN"}).json() == {
        "type": "about:blank", "title": "未找到", "status": 404,
        "detail": "没有编号为 987654321 的告警。"}


def test_validation_errors_are_translated(client, api_keys):
    answer = client.post("/alerts/1/dismiss?lang=zh", headers={"X-API-Key": api_keys["crew"]},
                         content=b"{not json", )
    body = answer.json()
    assert answer.status_code == 400 and CJK.search(body["detail"]), body


def test_the_deployment_language_is_the_default(sample_engine, monkeypatch):
    monkeypatch.setenv("TWIN_LANGUAGE", "zh")
    with TestClient(create_app(sample_engine, ServiceSettings()),
                    raise_server_exceptions=False) as chinese_first:
        assert chinese_first.get("/alerts/987654321").json()["title"] == "未找到"
        assert chinese_first.get("/alerts/987654321?lang=en").json()["title"] == "Not found"


def test_lang_is_taken_by_every_route_and_filters_nothing(client):
    # OGC API refuses unknown parameters, and items and exports take other names as property
    # filters: ?lang= is neither.
    items = client.get("/ogc/collections/streets/items?limit=2&lang=zh")
    assert items.status_code == 200 and len(items.json()["features"]) == 2
    assert items.headers["content-language"] == "zh-Hans"
    assert client.get("/ogc/collections/streets?lang=en").status_code == 200
    export = client.get("/exports/streets.geojson?lang=zh")
    assert export.status_code == 200 and len(export.json()["features"]) > 0
