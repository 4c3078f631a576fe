"""The 3D page as HTML: its MapLibre assets, its style and its texts in Chinese and English."""

import re

from geo.i18n import use_locale
from maps.three_d import map_3d, page_text, value_text

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_page_links_only_vendored_maplibre_and_the_twins_style(maps_client):
    page = maps_client.get("/map/3d", params={"lang": "en"})
    assert page.status_code == 200
    html = page.text
    assert '<script src="/static/vendor/maplibre-gl/maplibre-gl.js"></script>' in html
    assert '"style": "/styles/twin.json"' in html
    assert re.findall(r'(?:src|href)="(https?:[^"]+)"', html) == []
    assert maps_client.get("/static/vendor/maplibre-gl/maplibre-gl.js").status_code == 200


def test_page_speaks_chinese_and_english_from_the_catalogue(maps_client):
    zh = maps_client.get("/map/3d", params={"lang": "zh"}).text
    en = maps_client.get("/map/3d", params={"lang": "en"}).text
    assert "<title>社区数字孪生：三维</title>" in zh and '<html lang="zh-Hans">' in zh
    assert "<title>Neighbourhood Twin: 3D</title>" in en and not CJK.search(en)
    with use_locale("en"):
        english = [*page_text().values(),
                   *(v for values in value_text().values() for v in values.values())]
    with use_locale("zh"):
        chinese = [*page_text().values(),
                   *(v for values in value_text().values() for v in values.values())]
    assert all(CJK.search(text) for text in chinese if not text.startswith("{"))
    # No English text of the page is left in the Chinese one (as a JSON value or in HTML).
    untranslated = [text for text in english if len(text) > 3 and (
        f': "{text}"' in zh or f">{text}<" in zh or f"> {text}<" in zh)]
    assert untranslated == []


def test_offline_page_carries_its_style_inline():
    with use_locale("en"):
        html = map_3d(style={"version": 8, "sources": {}, "layers": []}, forecasts={30: {1: 55.0}},
                      bounds=(108.53, 32.51, 108.55, 32.53))
    assert '"style": {"version": 8' in html and '"30": {"1": 55.0}' in html
