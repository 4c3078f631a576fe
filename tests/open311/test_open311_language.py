"""Open311 speaks the resident's language: service names, descriptions and attribute choices."""

import re

CJK = re.compile(r"[\u3400-\u9fff]")


def test_services_in_chinese_and_english(client):
    chinese = client.get("/open311/v2/services.json?lang=zh").json()
    english = client.get("/open311/v2/services.json",
                         headers={"Accept-Language": "en-GB"}).json()
    assert [s["service_code"] for s in chinese] == [s["service_code"] for s in english]
    by_code = {s["service_code"]: s for s in chinese}
    assert by_code["pothole"]["service_name"] == "坑槽"
    assert by_code["manhole_cover"]["group"] == "检查井"
    for service in chinese:
        assert CJK.search(service["service_name"]) and CJK.search(service["description"])
    # English readers get English only, keywords included.
    assert not CJK.search(str(english))
    assert {s["service_code"]: s for s in english}["pothole"]["service_name"] == "Pothole"


def test_definition_and_xml_follow_the_language(client):
    chinese = client.get("/open311/v2/services/debris_pile.json?lang=zh").json()
    volume = chinese["attributes"][0]
    assert volume["description"] == "大约有多少？"
    assert [v["name"] for v in volume["values"]][0] == "少于 1 立方米（几袋）"
    xml = client.get("/open311/v2/services.xml", headers={"Accept-Language": "zh-CN"}).text
    assert "<service_name>坑槽</service_name>" in xml
    english = client.get("/open311/v2/services/debris_pile.json?lang=en").json()
    assert english["attributes"][0]["description"] == "About how much is there?"
    assert not CJK.search(str(english))


def test_errors_in_the_residents_language(client):
    chinese = client.get("/open311/v2/services/teleport.json?lang=zh")
    assert chinese.status_code == 404
    assert chinese.json() == [{"code": 404, "description": "没有服务“teleport”。"}]
    english = client.get("/open311/v2/services/teleport.json?lang=en").json()
    assert english == [{"code": 404, "description": "There is no service 'teleport'."}]
    xml = client.get("/open311/v2/requests.xml?start_date=2026-02-01T00:00:00Z"
                     "&end_date=2026-01-01T00:00:00Z", headers={"Accept-Language": "zh"}).text
    assert "end_date 早于 start_date。" in xml
