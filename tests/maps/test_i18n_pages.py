"""The maps speak the reader's language: ?lang=, Accept-Language, in real headless Chromium.

Each page is read as its reader sees it (the text the browser shows, and an alert's popup):
in Chinese it holds none of the catalogue's English sentences, in English no Chinese at all.
With TWIN_MAP_SCREENSHOTS set to a directory, the Chinese screenshots are kept there (how
docs/map-crew-zh.png and docs/map-planner-zh.png are made).
"""

import re

import pytest

from geo.i18n import LOCALES
from tests.geo.test_i18n import PLACEHOLDER, _tool
from tests.maps.browser import png_colours
from tests.maps.test_browser import (
    _check_offline_and_clean,
    _keep,
    _open,
    twin_with_alerts,  # noqa: F401 - a fixture
)
from tests.tools import requires_tool

CJK = re.compile(r"[\u3400-\u9fff]")
CREW_READY = ("document.querySelectorAll('.leaflet-marker-icon').length > 0 && "
              "document.querySelectorAll('.leaflet-pane svg path').length > 20")
PLANNER_READY = "document.querySelectorAll('svg path').length > 200"


def _english_phrases() -> list[str]:
    """The catalogue's English that Chinese readers must never see: each msgid's fixed parts."""
    catalogues = {locale: _tool().load(locale) for locale in LOCALES}
    phrases = set()
    for message in catalogues["zh_Hans"]:
        if not message.id:
            continue
        for msgid in (message.id if isinstance(message.id, tuple) else (message.id,)):
            for part in PLACEHOLDER.split(msgid):
                part = part.strip(" ,.:;()-")
                # Words of four letters or more: shorter ones ("PCI", "Id") are codes.
                if re.search(r"[A-Za-z]{4,}", part):
                    phrases.add(part)
    return sorted(phrases, key=len, reverse=True)


def _leftovers(text: str, phrases: list[str]) -> list[str]:
    return [p for p in phrases if re.search(rf"(?<![A-Za-z]){re.escape(p)}(?![A-Za-z])", text)]


def _read(page) -> str:
    """What the reader sees: the page's text and the first alert's popup, as text.

    Places are data, not words of the twin (the sample's street names are in pinyin and
    English: "Minzhu Street"), and so are the reasons this module's alerts were raised with:
    both are left out.
    """
    seen = page.evaluate("""(function () {
        var places = document.querySelectorAll('.twin-place, .twin-ext');
        places.forEach(function (e) { e.style.display = 'none'; });
        var text = document.body.innerText;
        places.forEach(function (e) { e.style.display = ''; });
        return text; })()""")
    popup = page.evaluate("(function () { var ids = Object.keys(window.twinMarkers || {});"
                          " return ids.length ? twinMarkers[ids[0]].getPopup().getContent()"
                          " : ''; })()")
    popup = re.sub(r'<div class="twin-place">.*?</div>', " ", popup)
    popup = re.sub(r"<div>(原因：|Why: ).*?</div>", " ", popup)
    text = seen + "\n" + re.sub(r"<[^>]+>", " ", popup)
    # Street names inside the worklist's reasons ("位于Minzhu Street（支路）").
    streets = page.evaluate("Object.values(window.TWIN_WORK || {}).map("
                            "f => f.properties.street_name).filter(n => n)")
    for name in sorted(set(streets), key=len, reverse=True):
        text = text.replace(name, " ")
    return text


@requires_tool("chromium", "/usr/bin/chromium")
@pytest.mark.parametrize(("path", "ready", "shot"), [
    ("/map", CREW_READY, "map-crew-zh.png"), ("/map/planner", PLANNER_READY, "map-planner-zh.png")])
def test_maps_in_chinese_and_english(browser, maps_live_url, twin_with_alerts,  # noqa: F811
                                     api_keys, path, ready, shot):
    phrases = _english_phrases()
    page = _open(browser, f"{maps_live_url}{path}?lang=zh", ready)
    if path == "/map":
        # A crew member's key: the worklist (GET /work in the page's language) opens.
        page.evaluate(f"twinSaveKey({api_keys['crew']!r})")
        assert page.wait("document.querySelectorAll('.twin-work-item').length > 0", timeout=20)
        assert "严重程度" in page.evaluate(
            "document.querySelector('.twin-why').textContent")  # why first, in Chinese
    chinese = _read(page)
    assert page.evaluate("document.documentElement.lang") == "zh-Hans"
    assert "图例" in chinese  # the legend's title
    assert _leftovers(chinese, phrases) == []
    png = page.screenshot()
    assert png_colours(page.screenshot(clip={"x": 0, "y": 0, "width": 640, "height": 430,
                                             "scale": 0.5})) > 5
    _keep(png, shot)
    _check_offline_and_clean(page, maps_live_url)
    page.ws.close()

    page = _open(browser, f"{maps_live_url}{path}?lang=en", ready)
    if path == "/map":
        assert page.wait("document.querySelectorAll('.twin-work-item').length > 0", timeout=20)
    english = _read(page)
    assert page.evaluate("document.documentElement.lang") == "en"
    assert "Legend" in english
    assert CJK.findall(english) == []
    page.ws.close()


# Chinese in the page's HTML as it is, or escaped by JSON inside a script ("\\u89c4").
CJK_IN_HTML = re.compile(r"[\u3400-\u9fff]|\\u(?:3[4-9a-f]|[4-9][0-9a-f])[0-9a-f]{2}", re.I)


def _has(html: str, text: str) -> bool:
    return text in html or text.encode("unicode_escape").decode() in html


def test_accept_language_picks_the_page_language(maps_client):
    chinese = maps_client.get("/map/planner", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert chinese.status_code == 200
    assert '<html lang="zh-Hans">' in chinese.text and _has(chinese.text, "规划地图")
    assert chinese.headers["content-language"] == "zh-Hans"
    english = maps_client.get("/map/planner", headers={"Accept-Language": "en-GB"})
    assert '<html lang="en">' in english.text and "Planner map" in english.text
    assert CJK_IN_HTML.findall(english.text) == []
    # ?lang= wins over the header.
    assert "Planner map" in maps_client.get(
        "/map/planner?lang=en", headers={"Accept-Language": "zh"}).text
