"""The crew map as a work tool, in headless Chromium on a phone (390x844) and a desk (1400x900).

What a crew checks: the page fits the phone (viewport tag, folded legend and layer list, no
control off screen), alerted streets are drawn as lines in their severity's colour, a popup
says the street's name. With TWIN_MAP_SCREENSHOTS set to a directory, the screenshots are
kept there (docs/map-crew.png, docs/map-crew-phone.png).
"""

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from geo import alerts, predictions
from maps.styles import SEVERITY_COLOURS
from tests.maps.browser import Chromium, png_colours
from tests.tools import requires_tool

pytestmark = requires_tool("chromium", "/usr/bin/chromium")
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
DESK = {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False}


@pytest.fixture(scope="module")
def crew_alerts(sample_engine):
    """Road wear on two named streets (high, critical) and a manhole alert: {name: (id, ...)}."""
    with sample_engine.begin() as conn:
        streets = predictions.street_attributes(conn)
        names = dict(conn.execute(sa.text(
            "SELECT id, name FROM streets WHERE name IS NOT NULL")).all())
        named = streets[streets["asset_id"].isin(list(names))].head(2)
        made = {}
        for severity, row in zip(("high", "critical"), named.itertuples(), strict=True):
            alert_id = alerts.raise_alert(
                conn, kind="road_wear", severity=severity, asset_layer="streets",
                asset_id=int(row.asset_id), geom_ewkt=row.geom_ewkt,
                reason="PCI 52 now, below 55 since the last survey")[0]
            made[severity] = (alert_id, names[int(row.asset_id)], row.external_id)
        manhole = predictions.sensor_manholes(conn).iloc[0]
        made["manhole"] = (alerts.raise_alert(
            conn, kind="manhole_cover_open", severity="critical", asset_layer="manholes",
            asset_id=int(manhole.asset_id), geom_ewkt=manhole.geom_ewkt,
            reason="Cover open (sensor)")[0], None, manhole.external_id)
    return made


@pytest.fixture(scope="module")
def browser():
    chromium = Chromium()
    yield chromium
    chromium.close()


def _open(browser, url: str, size: dict):
    page = browser.new_page()
    page.call("Emulation.setDeviceMetricsOverride", **size)
    page.call("Page.navigate", url=url)
    assert page.wait("document.querySelectorAll('.leaflet-marker-icon').length > 0 && "
                     "document.querySelectorAll('.leaflet-twin-lines-pane path').length > 20",
                     timeout=30), page.errors()
    return page


def _keep(png: bytes, name: str) -> None:
    where = os.environ.get("TWIN_MAP_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        (Path(where) / name).write_bytes(png)


def _alerted_lines(page) -> dict:
    """The stroke colours of the lines drawn for alerted streets: {colour: count}."""
    return page.evaluate("""(() => { var out = {};
        TWIN_ALERT_LINES.eachLayer(l => { var p = l.getElement && l.getElement();
            if (p && p.tagName === 'path') {
                var c = p.getAttribute('stroke'); out[c] = (out[c] || 0) + 1; } });
        return out; })()""")


def _open_popup(page, alert_id: int) -> str:
    assert page.evaluate(f"twinOpenAlert({alert_id})")
    assert page.wait(f"(document.querySelector('.leaflet-popup-content .twin-popup') || {{}})"
                     f".dataset && document.querySelector('.leaflet-popup-content "
                     f".twin-popup').dataset.alert === '{alert_id}'", timeout=15,
                     network=False), page.errors()
    return page.evaluate("document.querySelector('.leaflet-popup-content .twin-place')"
                         ".textContent")


def test_crew_map_fits_a_phone(browser, maps_live_url, crew_alerts):
    page = _open(browser, f"{maps_live_url}/map", PHONE)
    assert page.evaluate("document.querySelector('meta[name=viewport]').content") == \
        "width=device-width, initial-scale=1"
    assert page.evaluate("document.querySelectorAll('meta[name=viewport]').length") == 1
    assert page.evaluate("window.innerWidth") == 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    # The legend and the layer list start folded; every control is on screen and together
    # they leave most of the map free.
    assert page.evaluate("document.querySelector('.twin-legend').classList.contains('folded')")
    assert not page.evaluate("document.querySelector('.leaflet-control-layers')"
                             ".classList.contains('leaflet-control-layers-expanded')")
    boxes = page.evaluate("""Array.from(document.querySelectorAll('.leaflet-control'))
        .map(c => c.getBoundingClientRect()).filter(r => r.width > 0)
        .map(r => [r.left, r.top, r.right, r.bottom])""")
    assert boxes and all(x >= 0 and t >= 0 and r <= 390 and b <= 844 for x, t, r, b in boxes)
    covered = sum((r - x) * (b - t) for x, t, r, b in boxes) / (390 * 844)
    assert covered < 0.15, f"controls cover {covered:.0%} of the phone's screen"
    legend_folded = page.evaluate("document.querySelector('.twin-legend')"
                                  ".getBoundingClientRect().height")
    page.evaluate("document.querySelector('.twin-legend-toggle').click()")
    assert page.evaluate("document.querySelector('.twin-legend')"
                         ".getBoundingClientRect().height") > 3 * legend_folded
    page.evaluate("document.querySelector('.twin-legend-toggle').click()")

    # Alerted streets as lines in their severity's colour; the street's name in the popup.
    lines = _alerted_lines(page)
    assert lines.get(SEVERITY_COLOURS["high"]) == 1
    assert lines.get(SEVERITY_COLOURS["critical"]) == 1
    alert_id, name, external_id = crew_alerts["high"]
    assert _open_popup(page, alert_id).startswith(name)
    assert page.evaluate("document.querySelector('.leaflet-popup-content .twin-ext')"
                         ".textContent") == external_id
    popup = page.evaluate("document.querySelector('.leaflet-popup')"
                          ".getBoundingClientRect().width")
    assert popup <= 390
    png = page.screenshot()
    assert png_colours(png) > 5
    _keep(png, "map-crew-phone.png")
    assert page.errors() == []
    page.ws.close()


def test_crew_map_on_a_desk(browser, maps_live_url, crew_alerts):
    page = _open(browser, f"{maps_live_url}/map", DESK)
    assert not page.evaluate("document.querySelector('.twin-legend')"
                             ".classList.contains('folded')")
    assert page.evaluate("document.querySelector('.leaflet-control-layers')"
                         ".classList.contains('leaflet-control-layers-expanded')")
    lines = _alerted_lines(page)
    assert sum(lines.values()) == 2
    # A manhole's popup names the street it is on, with the manhole's own id small.
    alert_id, _name, external_id = crew_alerts["manhole"]
    place = _open_popup(page, alert_id)
    assert place.startswith("near ") and external_id in place
    png = page.screenshot()
    assert png_colours(png) > 5
    _keep(png, "map-crew.png")
    assert page.errors() == []
    page.ws.close()
