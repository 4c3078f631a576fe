"""The maps in a real headless Chromium, on the sample twin served over HTTP.

Each page must draw the twin (alert markers, vector-tile paths), show more than one colour,
log no console error, and ask nothing of any host but the twin. With TWIN_MAP_SCREENSHOTS
set to a directory, the screenshots are kept there (how docs/map-*.png are made).
"""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from geo import alerts, predictions
from service.map_pages import render_crew
from tests.maps.browser import png_colours
from tests.tools import requires_tool

pytestmark = requires_tool("chromium", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def twin_with_alerts(sample_engine):
    """A few alerts of each severity and a forecast for every street (no training: fast)."""
    now = datetime.now(UTC)
    with sample_engine.begin() as conn:
        manholes = predictions.sensor_manholes(conn).head(12)
        streets = predictions.street_attributes(conn)
        made = []
        for i, row in enumerate(manholes.itertuples()):
            severity = alerts.SEVERITIES[i % 4]
            made.append(alerts.raise_alert(
                conn, kind="manhole_tilt", severity=severity, asset_layer="manholes",
                asset_id=int(row.asset_id), geom_ewkt=row.geom_ewkt,
                reason=f"Tilt {11 + i:.1f} degrees from the installed baseline (alarm at 10)",
            )[0])
        street = streets.iloc[0]
        alerts.raise_alert(conn, kind="road_wear", severity="high", asset_layer="streets",
                           asset_id=int(street.asset_id), geom_ewkt=street.geom_ewkt,
                           reason="PCI 58 now, forecast 49 (41-56) in 90 days; below 55 in "
                                  "40 days")
        metric = predictions.metric_by_name(conn, "pci")
        predictions.insert_model(
            conn, version="maps-test", target="road_wear", metric="pci", train_from=None,
            train_to=now, rows=0, metrics={}, features=[], params={}, library_versions={},
            skops=b"", sha256="0" * 64)
        frame = pd.DataFrame({
            "run_id": "maps-test", "model_version": "maps-test", "target": "road_wear",
            "asset_layer": "streets", "asset_id": streets["asset_id"].astype("int64"),
            "subject": None, "metric_id": metric["id"], "as_of": now,
            "target_date": (now + timedelta(days=90)).date(), "horizon_days": 90,
            "value": [20.0 + (i * 7) % 80 for i in range(len(streets))],
            "lower": None, "upper": None, "days_to_threshold": None, "geom": ""})
        frame["lower"] = frame["value"] - 5
        frame["upper"] = frame["value"] + 5
        predictions.insert_predictions(conn, frame)
    return made


def _open(browser, url: str, ready: str):
    page = browser.new_page()
    page.call("Page.navigate", url=url)
    assert page.wait(ready, timeout=25), f"{url}: not ready ({ready}); errors {page.errors()}"
    return page


def _check_offline_and_clean(page, live: str) -> None:
    urls = [u for u in page.requested_urls() if not u.startswith(("data:", "blob:"))]
    assert urls, "the page asked for nothing"
    strangers = [u for u in urls if not u.startswith(live + "/")]
    assert strangers == [], f"requests left the twin: {strangers[:5]}"
    assert page.errors() == []


def _keep(png: bytes, name: str) -> None:
    where = os.environ.get("TWIN_MAP_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        (Path(where) / name).write_bytes(png)


def test_crew_map_in_chromium(browser, maps_live_url, twin_with_alerts, api_keys):
    page = _open(browser, f"{maps_live_url}/map",
                 "document.querySelectorAll('.leaflet-marker-icon').length > 0 && "
                 "document.querySelectorAll('.leaflet-tile-container path, "
                 ".leaflet-pane svg path').length > 20")
    markers = page.evaluate("document.querySelectorAll('.leaflet-marker-icon').length")
    paths = page.evaluate("document.querySelectorAll('svg path').length")
    assert markers >= 1 and paths > 20
    assert page.evaluate("document.querySelector('.twin-legend') !== null")
    assert page.evaluate("document.querySelectorAll('.leaflet-control-layers-overlays "
                         "label').length") >= 4
    tiles = [u for u in page.requested_urls() if "/tiles/" in u]
    assert any("/tiles/manholes/" in u for u in tiles)
    assert any(u.startswith(f"{maps_live_url}/static/vendor/") for u in page.requested_urls())
    png = page.screenshot()
    assert png_colours(page.screenshot(clip={"x": 0, "y": 0, "width": 640, "height": 430,
                                             "scale": 0.5})) > 5
    _keep(png, "map-crew.png")
    _check_offline_and_clean(page, maps_live_url)

    # Acting from the page: the key entered once, the answer shown.
    alert_id = twin_with_alerts[0]
    answer = page.evaluate(
        f"""(async () => {{
            twinSaveKey({api_keys['crew']!r});
            var box = document.createElement('div');
            box.innerHTML = '<div class="actions"><button></button><div class="answer"></div>'
                + '</div>';
            document.body.appendChild(box);
            twinAct({alert_id}, 'acknowledge', box.querySelector('button'));
            for (var i = 0; i < 50; i++) {{
                var text = box.querySelector('.answer').textContent;
                if (text && text !== 'Sending...') return text;
                await new Promise(r => setTimeout(r, 100));
            }}
            return box.querySelector('.answer').textContent;
        }})()""", await_promise=True)
    assert answer == "Done: the alert is now acknowledged."
    page.ws.close()


def test_planner_map_in_chromium(browser, maps_live_url, twin_with_alerts):
    page = _open(browser, f"{maps_live_url}/map/planner",
                 "document.querySelectorAll('svg path').length > 200")
    assert page.evaluate("document.querySelector('.twin-legend') !== null")
    assert page.evaluate("document.querySelector('canvas.leaflet-heatmap-layer') !== null")
    bases = page.evaluate("Array.from(document.querySelectorAll("
                          "'.leaflet-control-layers-base label')).map(l => l.textContent.trim())")
    assert "Forecast PCI in 90 days" in bases
    png = page.screenshot()
    assert png_colours(page.screenshot(clip={"x": 0, "y": 0, "width": 640, "height": 430,
                                             "scale": 0.5})) > 5
    _keep(png, "map-planner.png")
    # Switching to the forecast colours the streets from the forecasts in the page.
    page.evaluate("Array.from(document.querySelectorAll('.leaflet-control-layers-base label'))"
                  ".find(l => l.textContent.includes('90 days')).querySelector('input').click()")
    assert page.wait("document.querySelectorAll('svg path').length > 200", timeout=15)
    # A click on a street opens its popup with a chart of its surveys and its forecast with
    # the interval, drawn from the page's own tables.
    spot = page.evaluate("""(() => {
        var paths = document.querySelectorAll('.leaflet-twin-lines-pane path');
        for (var i = 0; i < paths.length; i++) {
            var p = paths[i], n = p.getTotalLength();
            if (!n) continue;
            var q = p.getPointAtLength(n / 2).matrixTransform(p.getScreenCTM());
            if (q.x > 20 && q.y > 20 && q.x < innerWidth - 300 && q.y < innerHeight - 20
                && document.elementFromPoint(q.x, q.y) === p) return [q.x, q.y];
        }
        return null;
    })()""")
    # (The damage density's canvas lies over the streets; it lets the clicks through.)
    assert spot, "no street path to click"
    for kind in ("mousePressed", "mouseReleased"):
        page.call("Input.dispatchMouseEvent", type=kind, x=spot[0], y=spot[1], button="left",
                  clickCount=1)
    chart = ".leaflet-popup-content svg.twin-chart"
    assert page.wait(f"document.querySelector('{chart}') !== null", timeout=10), page.errors()
    assert page.evaluate(f"document.querySelectorAll('{chart} polygon.twin-chart-interval')"
                         ".length") == 1
    assert page.evaluate(f"document.querySelectorAll('{chart} polyline.twin-chart-forecast')"
                         ".length") == 1
    assert page.evaluate(f"document.querySelectorAll('{chart} circle').length") >= 2
    popup = page.evaluate("document.querySelector('.leaflet-popup-content').innerText")
    assert "PCI: surveys and forecast" in popup and "PCI forecast in 90 days" in popup
    _keep(page.screenshot(), "map-planner-popup.png")
    _check_offline_and_clean(page, maps_live_url)
    page.ws.close()


def test_offline_file_works_from_disk(browser, sample_engine, twin_with_alerts, tmp_path):
    page_file = tmp_path / "crew.html"
    page_file.write_text(render_crew(sample_engine, inline=True), encoding="utf-8")
    page = browser.new_page()
    page.call("Page.navigate", url=page_file.as_uri())
    assert page.wait("document.querySelectorAll('.leaflet-marker-icon').length > 0 && "
                     "document.querySelectorAll('svg path').length > 20", timeout=25,
                     network=False), page.errors()
    assert page.errors() == []
    assert [u for u in page.requested_urls()
            if not u.startswith(("data:", "blob:", "file:"))] == []
    page.ws.close()


@pytest.mark.parametrize(("path", "ready"), [
    ("/docs", "document.querySelectorAll('.opblock').length > 20"),
    ("/redoc", "document.querySelectorAll('[data-section-id*=\"operation/\"]').length > 20"),
])
def test_api_documentation_renders_offline(browser, maps_live_url, path, ready):
    # The API documentation draws every operation with nothing fetched from outside the twin.
    page = browser.new_page()
    page.call("Page.navigate", url=f"{maps_live_url}{path}")
    assert page.wait(ready, timeout=25, network=False), page.errors()
    assert page.evaluate("document.body.innerText").count("/alerts") >= 2
    assert any(u.startswith(f"{maps_live_url}/static/vendor/") for u in page.requested_urls())
    assert png_colours(page.screenshot(clip={"x": 0, "y": 0, "width": 640, "height": 430,
                                             "scale": 0.5})) > 5
    # ReDoc's bundle always asks for its maker's logo from a public host; the page's
    # Content-Security-Policy refuses it, so it never leaves the browser.
    refused = [e for e in page.errors() if "violates the following Content Security Policy" in e]
    assert [e for e in page.errors() if e not in refused] == []
    asked = [u for u in page.requested_urls() if not u.startswith(("data:", "blob:"))]
    assert [u for u in asked if not u.startswith(maps_live_url + "/")
            and u != "https://cdn.redoc.ly/redoc/logo-mini.svg"] == []
    page.ws.close()
