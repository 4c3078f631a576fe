"""The 3D view in a real headless Chromium drawing WebGL through its software renderer.

The page must extrude the sample's houses in their compound type's colours (and switch to
the open-matters colours), differ from a blank page, log no error and ask nothing of any host
but the twin; the single file of ``twin map --kind 3d`` must do the same from disk. With
TWIN_MAP_SCREENSHOTS set to a directory, the screenshot is kept there (docs/map-3d.png).
"""

import colorsys
import os
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from geo import alerts
from maps.styles import COMPOUND_COLOURS, MATTER_STEPS
from service.map_pages import render_3d
from tests.maps.browser import Chromium, png_colours, png_pixels
from tests.tools import requires_tool

pytestmark = requires_tool("chromium", "/usr/bin/chromium")

READY = "window.twin3d && window.twin3d.ready === true"
HOUSES = "window.twin3d.map.queryRenderedFeatures({layers: ['houses']}).length"
IDLE = ("new Promise(r => { var m = window.twin3d.map; m.once('idle', () => r(true)); "
        "m.triggerRepaint(); })")
DIAGNOSE = ("JSON.stringify(window.twin3d && {ready: window.twin3d.ready, errors: "
            "window.twin3d.errors, zoom: window.twin3d.map && window.twin3d.map.getZoom(), "
            "center: window.twin3d.map && window.twin3d.map.getCenter(), layers: "
            "window.twin3d.map && window.twin3d.map.getStyle().layers.map(l => l.id), houses: "
            "window.twin3d.map && window.twin3d.map.querySourceFeatures('buildings', "
            "{sourceLayer: 'buildings'}).length, rendered: window.twin3d.map.queryRenderedFeatures("
            "{layers: ['houses']}).length, all: window.twin3d.map.queryRenderedFeatures().length,"
            " sample: window.twin3d.map.querySourceFeatures('buildings', {sourceLayer: "
            "'buildings'})[0].properties, gl: !!window.twin3d.map.painter})")
CLIP = {"x": 290, "y": 60, "width": 900, "height": 760, "scale": 1}


@pytest.fixture(scope="module")
def webgl():
    chromium = Chromium(webgl=True)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def alerts_at_houses(sample_engine):
    """Active alerts on the houses in the middle of the view, so they have matters to colour."""
    with sample_engine.begin() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, ST_AsEWKT(ST_PointOnSurface(geom)) FROM buildings ORDER BY geom <-> "
            "(SELECT ST_SetSRID(ST_Centroid(ST_Extent(geom)), 4326) FROM streets) LIMIT 40")).all()
        for i, (building_id, ewkt) in enumerate(rows):
            for k in range(1 + i % 7):
                alerts.raise_alert(conn, kind=f"house_check_{k}", severity="medium",
                                   asset_layer="buildings", asset_id=int(building_id),
                                   geom_ewkt=ewkt, reason="Cracks reported in the stairwell")
    return len(rows)


def _hue_near(pixels: np.ndarray, colours: list[str], degrees: float = 20.0) -> np.ndarray:
    """Where pixels have (about) the hue of one of ``colours`` and some saturation."""
    flat = pixels.reshape(-1, 3) / 255.0
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in flat])
    near = np.zeros(len(flat), dtype=bool)
    for colour in colours:
        rgb = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        hue = colorsys.rgb_to_hsv(*rgb)[0]
        gap = np.abs(hsv[:, 0] - hue)
        near |= (np.minimum(gap, 1 - gap) * 360 <= degrees) & (hsv[:, 1] >= 0.12)
    return near.reshape(pixels.shape[:2])


def _open(browser, url: str, network: bool = False):
    page = browser.new_page()
    page.call("Page.navigate", url=url)
    assert page.wait(f"{READY} && {HOUSES} > 10", timeout=60, network=network), (
        f"{url}: no houses drawn; errors {page.errors()}; "
        f"{page.evaluate(DIAGNOSE)}")
    return page


def _shot(page) -> bytes:
    page.evaluate(IDLE, await_promise=True)
    return page.screenshot(clip=CLIP)


@pytest.mark.slow
def test_3d_view_extrudes_houses_in_their_colours(webgl, maps_live_url, alerts_at_houses):
    page = webgl.new_page()
    page.call("Page.navigate", url="data:text/html,<html><body></body></html>")
    assert page.wait("document.readyState === 'complete'", network=False)
    empty = png_colours(page.screenshot(clip=CLIP))
    page.ws.close()

    # In Chinese, the sample deployment's language (the page's texts come from the catalogue).
    page = _open(webgl, f"{maps_live_url}/map/3d?lang=zh")
    assert page.evaluate("document.title") == "社区数字孪生：三维"
    assert page.evaluate("window.twin3d.map.getPitch()") > 30  # tilted: 3D, not a flat map
    assert page.evaluate("window.twin3d.map.getLayer('houses').type") == "fill-extrusion"
    shown = _shot(page)
    assert empty <= 2 and png_colours(shown) > 20

    # The houses are what the extrusion layer adds: hidden, those pixels go back to the ground.
    page.evaluate("void window.twin3d.map.setLayoutProperty('houses', 'visibility', 'none')")
    hidden = _shot(page)
    page.evaluate("void window.twin3d.map.setLayoutProperty('houses', 'visibility', 'visible')")
    with_houses, without = png_pixels(shown), png_pixels(hidden)
    changed = np.abs(with_houses.astype(int) - without.astype(int)).sum(axis=2) > 30
    assert changed.mean() > 0.02, f"houses cover only {changed.mean():.1%} of the view"
    typed = _hue_near(with_houses, list(COMPOUND_COLOURS.values()))
    assert typed[changed].mean() > 0.6, f"{typed[changed].mean():.0%} in compound colours"

    where = os.environ.get("TWIN_MAP_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        (Path(where) / "map-3d.png").write_bytes(page.screenshot())

    # Coloured by open matters: the houses with alerts at them turn warm, the rest grey-blue.
    page.evaluate("document.querySelector('input[name=houses][value=matters]').click()")
    by_matters = png_pixels(_shot(page))
    assert (np.abs(by_matters.astype(int) - with_houses.astype(int)).sum(axis=2) > 30
            )[changed].mean() > 0.3
    warm = _hue_near(by_matters, [colour for _, colour in MATTER_STEPS[1:]])
    assert warm[changed].mean() > 0.005, "no house with open matters is drawn in their colour"
    assert page.evaluate("window.twin3d.map.queryRenderedFeatures({layers: ['houses']})"
                         ".some(f => f.properties.open_matters > 0)")

    # A click on a house opens its popup, as on the 2D maps.
    point = page.evaluate("""(() => {
        var m = window.twin3d.map, c = m.getCanvas();
        for (var y = 100; y < c.clientHeight; y += 15) {
            for (var x = 300; x < c.clientWidth - 60; x += 15) {
                if (m.queryRenderedFeatures([x, y], {layers: ['houses']}).length)
                    return [x, y];
            }
        }
        return null;
    })()""")
    assert point is not None
    for kind in ("mousePressed", "mouseReleased"):
        page.call("Input.dispatchMouseEvent", type=kind, x=point[0], y=point[1],
                  button="left", clickCount=1)
    assert page.wait("document.querySelector('.maplibregl-popup') !== null", timeout=10,
                     network=False)
    popup = page.evaluate("document.querySelector('.maplibregl-popup').innerText")
    assert "楼栋:" in popup and "层数:" in popup and "小区:" in popup

    assert page.errors() == [] and page.evaluate("window.twin3d.errors") == []
    urls = [u for u in page.requested_urls() if not u.startswith(("data:", "blob:"))]
    assert any("/tiles/buildings/" in u for u in urls)
    assert any(u.endswith("/static/vendor/maplibre-gl/maplibre-gl.js") for u in urls)
    assert [u for u in urls if not u.startswith(maps_live_url + "/")] == []
    page.ws.close()


def test_3d_file_works_from_disk(webgl, sample_engine, tmp_path):
    page_file = tmp_path / "twin-3d.html"
    page_file.write_text(render_3d(sample_engine, inline=True), encoding="utf-8")
    page = _open(webgl, page_file.as_uri(), network=False)
    with sample_engine.connect() as conn:
        houses = conn.execute(sa.text("SELECT count(*) FROM buildings")).scalar_one()
    assert page.evaluate("window.twin3d.map.getSource('buildings').getData()"
                         ".then(d => d.features.length)", await_promise=True) == houses
    shown = png_pixels(_shot(page))
    assert _hue_near(shown, list(COMPOUND_COLOURS.values())).mean() > 0.02
    assert page.errors() == [] and page.evaluate("window.twin3d.errors") == []
    assert [u for u in page.requested_urls()
            if not u.startswith(("data:", "blob:", "file:"))] == []
    page.ws.close()
