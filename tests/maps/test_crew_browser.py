"""The crew map as a work tool, in headless Chromium on a phone (390x844) and a desk (1400x900).

What a crew checks: the page fits the phone (viewport tag, folded legend and layer list, no
control off screen), alerted streets are drawn as lines in their severity's colour, a popup
says the street's name, the worklist panel (a bottom sheet on the phone) lists GET /work in
priority order and a tap on an item opens its popup, and a work record with a photo saved
from the popup is in the twin afterwards (checked through the API). With
TWIN_MAP_SCREENSHOTS set to a directory, the screenshots are kept there (docs/map-crew.png,
docs/map-crew-phone.png).
"""

import os
import struct
import warnings
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from geo import alerts, predictions
from maps.styles import SEVERITY_COLOURS
from service.map_pages import render_crew
from tests.maps.browser import png_colours
from tests.tools import requires_tool

pytestmark = requires_tool("chromium", "/usr/bin/chromium")
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
DESK = {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False}


@pytest.fixture(scope="module")
def crew_alerts(sample_engine):
    """Road wear on three named streets (high, critical, medium) and a manhole alert.

    {severity or "manhole": (alert id, street name, external id)}
    """
    with sample_engine.begin() as conn:
        streets = predictions.street_attributes(conn)
        names = dict(conn.execute(sa.text(
            "SELECT id, name FROM streets WHERE name IS NOT NULL")).all())
        named = streets[streets["asset_id"].isin(list(names))].head(3)
        made = {}
        for severity, row in zip(("high", "critical", "medium"), named.itertuples(),
                                 strict=True):
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


def _asphalt_png(width: int = 160, height: int = 120) -> bytes:
    """A small PNG like a photo of a road: grey, speckled, with a dark crack across it."""
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")
        for x in range(width):
            grey = 90 + (x * 7 + y * 13) % 23 + (x * y) % 11
            if abs(y - height // 2 - (x % 37 - 18) // 3) <= 1:
                grey = 35
            row += bytes((grey, grey, grey + 4))
        rows.append(bytes(row))
    return _png_file(width, height, zlib.compress(b"".join(rows)))


def _noise_png(width: int, height: int) -> bytes:
    """A PNG of random pixels: as large as a camera's photo, which PNG cannot compress."""
    rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))
    return _png_file(width, height, zlib.compress(rows, 1))


def _png_file(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _open(browser, url: str, size: dict):
    """The page at ``url`` once its markers and lines are drawn and nothing is loading."""
    page = browser.new_page()
    page.call("Emulation.setDeviceMetricsOverride", **size)
    drawn = ("[document.querySelectorAll('.leaflet-marker-icon').length, "
             "document.querySelectorAll('.leaflet-twin-lines-pane path').length]")
    for attempt in (1, 2):
        page.events.clear()
        page.call("Page.navigate", url=url)
        if page.wait(f"(([markers, lines]) => markers > 0 && lines > 20)({drawn})",
                     timeout=60):  # generous: the machine may be busy
            return page
        stuck = (f"markers and lines {page.evaluate(drawn)}, still loading "
                 f"{page.pending_urls()}, errors {page.errors()}")
        if attempt == 1:
            # Not understood yet: in some full runs of the suite (3 of 6 on 2026-12-08, never
            # alone) the desk page drew but 26 tile requests were still loading after 60 s. Said as
            # a warning, so that it is seen, and tried once more.
            warnings.warn(f"the crew map did not settle in 60 s, loading it again: {stuck}",
                          stacklevel=2)
    raise AssertionError(stuck)


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


def _wait_popup(page, alert_id: int) -> str:
    assert page.wait(f"(document.querySelector('.leaflet-popup-content .twin-popup') || {{}})"
                     f".dataset && document.querySelector('.leaflet-popup-content "
                     f".twin-popup').dataset.alert === '{alert_id}'", timeout=15,
                     network=False), page.errors()
    return page.evaluate("document.querySelector('.leaflet-popup-content .twin-place')"
                         ".textContent")


def _open_popup(page, alert_id: int) -> str:
    assert page.evaluate(f"twinOpenAlert({alert_id})")
    return _wait_popup(page, alert_id)


def _worklist(page, key: str) -> list[int]:
    """Save the crew key as a crew member does; the alert ids the panel then lists, in order."""
    page.evaluate(f"twinSaveKey({key!r})")
    assert page.wait("document.querySelectorAll('.twin-work-item').length > 0", timeout=15,
                     network=False), page.errors()
    return page.evaluate("Array.from(document.querySelectorAll('.twin-work-item'))"
                         ".map(li => Number(li.dataset.alert))")


def _work_api(client, key: str) -> list[dict]:
    body = client.get("/work", params={"limit": 1000}, headers={"X-API-Key": key}).json()
    return [f["properties"] for f in body["features"]]


def test_crew_map_fits_a_phone(browser, maps_live_url, maps_client, crew_alerts, api_keys,
                               tmp_path):
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
    page.evaluate("void TWIN_MAP.closePopup()")

    # The worklist is a bottom sheet: folded to its bar at first, in priority order when open,
    # never more than a little over half the screen; a tap on an item folds it and opens the
    # item's popup.
    listed = _worklist(page, api_keys["crew"])
    expected = _work_api(maps_client, api_keys["crew"])
    assert listed == [i["id"] for i in expected]
    sheet = "document.querySelector('.twin-work').getBoundingClientRect()"
    assert page.evaluate("document.querySelector('.twin-work').classList.contains('folded')")
    assert page.evaluate(f"{sheet}.height") <= 50 and page.evaluate(f"{sheet}.bottom") == 844
    page.evaluate("document.querySelector('.twin-work-head').click()")
    assert page.wait(f"{sheet}.height > 150", timeout=5, network=False)
    assert page.evaluate(f"{sheet}.height") <= 0.56 * 844
    assert page.evaluate(f"{sheet}.width") == 390
    # An assignment made elsewhere shows in the item once the list is asked again.
    high = crew_alerts["high"][0]
    assigned = maps_client.patch(f"/alerts/{high}", json={"assignee": "Crew 3",
                                                          "due_on": "2026-12-11"},
                                 headers={"X-API-Key": api_keys["crew"]})
    assert assigned.status_code == 200, assigned.text
    page.evaluate("void twinLoadWork()")
    who = f"document.querySelector('.twin-work-item[data-alert=\"{high}\"] .twin-work-who')"
    assert page.wait(f"{who} !== null", timeout=10, network=False)
    assert page.evaluate(f"{who}.textContent") == "Assigned to Crew 3, due 2026-12-11"
    first = expected[0]
    assert page.evaluate("document.querySelector('.twin-work-item .twin-why')"
                         ".textContent").startswith(first["why_first"][0])
    png = page.screenshot()
    assert png_colours(png) > 5
    _keep(png, "map-crew-phone.png")
    page.evaluate(f"document.querySelector('.twin-work-item[data-alert=\"{first['id']}\"]')"
                  ".click()")
    place = _wait_popup(page, first["id"])
    assert first["street_name"] in place

    # A camera photo too large for the twin (10 MB) is sent smaller, as a JPEG.
    alert_id = crew_alerts["medium"][0]
    page.evaluate(f"TWIN_MAP.closePopup(); void twinOpenAlert({alert_id})")
    _wait_popup(page, alert_id)
    popup = "document.querySelector('.leaflet-popup-content')"
    page.evaluate(f"Array.from({popup}.querySelectorAll('button'))"
                  ".find(b => b.textContent === 'Resolve').click()")
    big = tmp_path / "camera.png"
    big.write_bytes(_noise_png(2600, 1950))
    assert big.stat().st_size > 10 * 1024 * 1024
    page.call("DOM.enable")
    node = page.call("Runtime.evaluate",
                     expression=f"{popup}.querySelector('input[type=file]')")["result"]
    page.call("DOM.setFileInputFiles", files=[str(big)], objectId=node["objectId"])
    page.evaluate(f"{popup}.querySelector('select[name=action]').value = 'patching';"
                  f"{popup}.querySelector('.twin-save').click()")
    assert page.wait(f"{popup}.querySelector('img.twin-photo') !== null", timeout=30,
                     network=False), page.evaluate(f"{popup}.querySelector('.answer')"
                                                   ".textContent")
    crew = {"X-API-Key": api_keys["crew"]}
    [stored] = maps_client.get(f"/alerts/{alert_id}", headers=crew).json()["photos"]
    assert stored["media_type"] == "image/jpeg" and stored["bytes"] < 5 * 1024 * 1024
    assert page.evaluate(f"{popup}.querySelector('img.twin-photo').naturalWidth") == 2048
    assert page.evaluate("document.querySelector('.twin-work').classList.contains('folded')")
    assert page.errors() == []
    page.ws.close()


@pytest.mark.slow
def test_crew_map_on_a_desk(browser, maps_live_url, maps_client, sample_engine, crew_alerts,
                            api_keys, tmp_path):
    page = _open(browser, f"{maps_live_url}/map", DESK)
    assert not page.evaluate("document.querySelector('.twin-legend')"
                             ".classList.contains('folded')")
    assert page.evaluate("document.querySelector('.leaflet-control-layers')"
                         ".classList.contains('leaflet-control-layers-expanded')")
    with sample_engine.connect() as conn:
        streets = alerts.list_alerts(conn, alerts.AlertFilter(statuses=alerts.ACTIVE,
                                                              kinds=("road_wear",)), limit=100)
    assert len(streets) >= 2 and sum(_alerted_lines(page).values()) == len(streets)
    # A manhole's popup names the street it is on, with the manhole's own id small.
    alert_id, _name, external_id = crew_alerts["manhole"]
    place = _open_popup(page, alert_id)
    assert place.startswith("near ") and external_id in place
    page.evaluate("void TWIN_MAP.closePopup()")

    # The worklist beside the map, in priority order, each item saying why first.
    key = api_keys["crew"]
    listed = _worklist(page, key)
    expected = _work_api(maps_client, key)
    assert listed == [i["id"] for i in expected] and len(listed) >= 3
    priorities = [i["priority"] for i in expected]
    assert priorities == sorted(priorities, reverse=True)
    panel = page.evaluate("(() => { var r = document.querySelector('.twin-work')"
                          ".getBoundingClientRect(); return [r.left, r.width, r.height]; })()")
    assert panel == [1400 - 340, 340, 900]
    map_right = page.evaluate("document.querySelector('.folium-map')"
                              ".getBoundingClientRect().right")
    assert map_right <= 1400 - 340  # the panel covers no part of the map
    whys = page.evaluate("Array.from(document.querySelectorAll('.twin-work-item'))"
                         ".map(li => li.querySelector('.twin-why').textContent)")
    assert all(f"{i['severity']} severity" in w for i, w in zip(expected, whys, strict=True))

    # Resolve from the popup with a work record and a photo from the camera input.
    alert_id, name, _external = crew_alerts["critical"]
    page.evaluate(f"document.querySelector('.twin-work-item[data-alert=\"{alert_id}\"]')"
                  ".click()")
    assert _wait_popup(page, alert_id).startswith(name)
    popup = "document.querySelector('.leaflet-popup-content')"
    page.evaluate(f"Array.from({popup}.querySelectorAll('button'))"
                  ".find(b => b.textContent === 'Resolve').click()")
    options = page.evaluate(f"Array.from({popup}.querySelectorAll('select[name=action] "
                            "option')).map(o => o.value)")
    assert "mill_and_overlay" in options and "cover_replaced" not in options
    camera = page.evaluate(f"(() => {{ var i = {popup}.querySelector('input[type=file]');"
                           f" return [i.accept, i.getAttribute('capture')]; }})()")
    assert camera == ["image/*", "environment"]
    photo = tmp_path / "street.png"
    photo.write_bytes(_asphalt_png())
    page.call("DOM.enable")
    node = page.call("Runtime.evaluate",
                     expression=f"{popup}.querySelector('input[type=file]')")["result"]
    page.call("DOM.setFileInputFiles", files=[str(photo)], objectId=node["objectId"])
    page.evaluate(f"{popup}.querySelector('select[name=action]').value = 'mill_and_overlay';"
                  f"{popup}.querySelector('textarea[name=note]').value = "
                  "'Milled and overlaid the whole block';"
                  f"{popup}.querySelector('.twin-save').click()")
    assert page.wait(f"{popup}.querySelector('img.twin-photo') !== null && "
                     f"{popup}.querySelector('img.twin-photo').naturalWidth > 0",
                     timeout=20, network=False), page.evaluate(
        f"{popup}.querySelector('.answer').textContent")
    answer = page.evaluate(f"{popup}.querySelector('.answer').textContent")
    assert answer == ("Done: the alert is now resolved. Photo stored with the work record.")
    png = page.screenshot()
    assert png_colours(png) > 5
    _keep(png, "map-crew.png")
    # The worklist no longer lists it.
    assert page.wait(f"!document.querySelector('.twin-work-item[data-alert=\"{alert_id}\"]')"
                     " && document.querySelectorAll('.twin-work-item').length === "
                     f"{len(listed) - 1}",
                     timeout=10, network=False)

    # The settled alert fades on the map: its marker and its street line.
    assert page.evaluate(f"twinMarkers[{alert_id}].options.opacity") == 0.4
    assert page.evaluate(f"(() => {{ var o = []; TWIN_ALERT_LINES.eachLayer(l => {{ if "
                         f"(l.feature.properties.id === {alert_id}) o.push(l.options.opacity);"
                         f" }}); return o; }})()") == [0.35]

    # Opened again, the popup shows the work recorded and the photo stored by the twin.
    page.evaluate(f"TWIN_MAP.closePopup(); void twinOpenAlert({alert_id})")
    _wait_popup(page, alert_id)
    assert page.wait(f"{popup}.querySelector('.twin-record img.twin-photo') !== null && "
                     f"{popup}.querySelector('.twin-record img.twin-photo').naturalWidth "
                     "=== 160", timeout=15, network=False), page.errors()
    assert page.evaluate(f"{popup}.querySelector('.twin-record').textContent").startswith(
        "Work: Mill and overlay by test-crew, ")

    # Through the API: resolved, with the work record and the very photo.
    crew = {"X-API-Key": key}
    alert = maps_client.get(f"/alerts/{alert_id}", headers=crew).json()
    assert alert["properties"]["status"] == "resolved"
    [record] = alert["work"]
    assert (record["action"], record["note"], record["done_by"]) == (
        "mill_and_overlay", "Milled and overlaid the whole block", "test-crew")
    [stored] = alert["photos"]
    assert stored["work_record_id"] == record["id"]
    got = maps_client.get(stored["href"], headers=crew)
    assert got.status_code == 200 and got.content == photo.read_bytes()

    # Dismiss needs its note, in the page before the twin is asked.
    alert_id = crew_alerts["manhole"][0]
    page.evaluate(f"TWIN_MAP.closePopup(); void twinOpenAlert({alert_id})")
    _wait_popup(page, alert_id)
    page.evaluate(f"Array.from({popup}.querySelectorAll('button'))"
                  ".find(b => b.textContent === 'Dismiss').click();"
                  f"{popup}.querySelector('.twin-save').click()")
    assert page.evaluate(f"{popup}.querySelector('.answer').textContent") == \
        "A note is needed to dismiss an alert."
    page.evaluate(f"{popup}.querySelector('textarea[name=note]').value = 'Cover refitted by "
                  f"the water company';{popup}.querySelector('.twin-save').click()")
    assert page.wait(f"{popup}.querySelector('.answer').textContent === "
                     "'Done: the alert is now dismissed.'", timeout=10, network=False)
    assert maps_client.get(f"/alerts/{alert_id}", headers=crew).json()["properties"][
        "status"] == "dismissed"
    assert page.errors() == []
    page.ws.close()


def test_crew_file_from_disk_says_the_worklist_needs_the_service(browser, sample_engine,
                                                                 crew_alerts, tmp_path):
    page_file = tmp_path / "crew.html"
    page_file.write_text(render_crew(sample_engine, inline=True), encoding="utf-8")
    page = browser.new_page()
    page.call("Emulation.setDeviceMetricsOverride", **PHONE)
    page.call("Page.navigate", url=page_file.as_uri())
    assert page.wait("document.querySelectorAll('.leaflet-twin-lines-pane path').length > 20",
                     timeout=30, network=False), page.errors()
    page.evaluate("twinSaveKey('a key')")
    assert page.evaluate("document.querySelector('.twin-work-state').textContent") == \
        "This page was opened from a file: the worklist needs the twin's service."
    with sample_engine.connect() as conn:
        active = alerts.list_alerts(conn, alerts.AlertFilter(statuses=alerts.ACTIVE,
                                                             kinds=("road_wear",)), limit=100)
    assert active and sum(_alerted_lines(page).values()) == len(active)
    assert page.errors() == []
    assert [u for u in page.requested_urls()
            if not u.startswith(("data:", "blob:", "file:"))] == []
    page.ws.close()
