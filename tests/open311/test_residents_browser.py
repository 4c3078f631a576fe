"""The residents' pages in headless Chromium: /report on a phone (pin, text, send, status page)
and the council list on a desk, in Chinese. With TWIN_MAP_SCREENSHOTS set to a directory the
screenshots are kept there (docs/report-phone.png, docs/report-status-phone.png,
docs/council.png)."""

import os
from pathlib import Path

import httpx
import pytest

from tests.maps.browser import Chromium, png_colours
from tests.service.conftest import api_keys  # noqa: F401
from tests.tools import requires_tool

HTTP = httpx.Client(timeout=120)

pytestmark = requires_tool("chromium", "/usr/bin/chromium")
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
DESK = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}


@pytest.fixture(scope="module")
def browser():
    chromium = Chromium()
    yield chromium
    chromium.close()


def _keep(png: bytes, name: str) -> None:
    where = os.environ.get("TWIN_MAP_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        (Path(where) / name).write_bytes(png)


def _local_only(page, twin: str) -> None:
    outside = [u for u in page.requested_urls()
               if not u.startswith((twin, "data:", "blob:", "about:"))]
    assert outside == []


def test_report_page_on_a_phone_in_chinese(browser, twin):
    page = browser.new_page()
    page.call("Emulation.setDeviceMetricsOverride", **PHONE)
    page.call("Page.navigate", url=f"{twin}/report")
    assert page.wait("document.querySelectorAll('#map path').length > 20", timeout=90), \
        page.errors()
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.evaluate("document.querySelector('h1').textContent") == "报告问题"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # A tap on the map places the pin; the text is typed; the report is sent.
    page.evaluate("void map.fire('click', {latlng: map.getCenter()})")
    assert page.evaluate("document.querySelectorAll('.leaflet-marker-icon').length") == 1
    page.evaluate("document.getElementById('description').value = "
                  "'路灯坏了，整条路晚上都是黑的'")
    png = page.screenshot()
    assert png_colours(png) > 5
    _keep(png, "report-phone.png")
    page.evaluate("document.getElementById('report').requestSubmit()")
    assert page.wait("document.getElementById('status-link') !== null", timeout=90), \
        (page.errors(), page.evaluate("document.getElementById('answer').textContent"))
    answer = page.evaluate("document.getElementById('answer').textContent")
    # The lighting department, named in the page's language (it was English before).
    assert "已收到" in answer and "路灯所" in answer and "street lighting" not in answer
    page.call("Page.navigate", url=page.evaluate("document.getElementById('status-link').href"))
    assert page.wait("document.getElementById('status') !== null", timeout=30)
    assert "处理中" in page.evaluate("document.getElementById('status').textContent")
    assert "路灯所" in page.evaluate("document.body.textContent")  # who acts, in Chinese
    _keep(page.screenshot(), "report-status-phone.png")
    assert page.errors() == []
    _local_only(page, twin)


SEED = (("grp-cp-0004", "2号门外路面塌陷了"), ("grp-cp-0004", "2号门外路面塌陷，车过不去"),
        ("grp-cp-0004", "小区垃圾桶满了没人清"),
        ("grp-cp-0006", "楼道里堆满杂物，电动车在楼道充电"),
        ("grp-cp-0006", "我家马桶堵了"), ("grp-cp-0002", "路灯坏了，晚上很黑"),
        ("grp-cp-0002", "绿地被人占了种菜"), ("grp-cp-0003", "下水道堵了，一下雨就积水"))


def test_council_list_on_a_desk(browser, twin, api_keys):  # noqa: F811
    for n, (group, said) in enumerate(SEED):  # a few groups' messages, as their bots relay
        made = HTTP.post(f"{twin}/intake/messages", headers={"X-API-Key": api_keys["viewer"]},
                         json={"group_id": group, "sender_id": f"wx-{n}", "text": said,
                               "sent_at": "2026-12-07T09:00:00+08:00"})
        assert made.status_code == 201, made.text
    page = browser.new_page()
    page.call("Emulation.setDeviceMetricsOverride", **DESK)
    page.call("Page.navigate", url=f"{twin}/council")
    assert page.wait("document.getElementById('lines') !== null", timeout=30)
    assert page.evaluate("document.querySelector('h1').textContent") == "三事清单"
    rows = page.evaluate("document.querySelectorAll('#lines tr').length")
    assert rows >= 8  # the head and the lines of the report and the messages
    # Seven matters: the second road collapse at gate 2 is a +1, not a line of its own, and
    # the green space taken at Xinglong is not joined to its streetlight.
    lines = HTTP.get(f"{twin}/council.json", params={"compound": "CP-0002"}).json()
    assert sorted((ln["matter"], ln["requests"]) for ln in lines) == [("big", 1), ("small", 1)]
    # The parties are named in the page's language: the county's bureaus and the compounds'
    # managers in Chinese, not the stored English.
    parties = page.evaluate("[...document.querySelectorAll('#lines tr td:nth-child(2)')]"
                            ".map(td => td.textContent)")
    assert any("县" in party for party in parties), parties
    assert not any("Bureau" in party or "committee" in party or "company" in party
                   for party in parties), parties
    png = page.screenshot(captureBeyondViewport=False)
    assert png_colours(png) > 5
    _keep(png, "council.png")
    assert page.errors() == []
    _local_only(page, twin)
