"""The folium maps without a browser or a database: layers, legend, and no CDN anywhere."""

import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import folium
import pytest
from folium.plugins import Fullscreen

from maps.analysis import damage_density, debris_hotspots
from maps.assets import LOCAL, STATIC_DIR, AssetMissing, inline_assets, use_local_assets
from maps.crew import alert_popup, crew_map
from maps.planner import planner_map

TILES = {layer: f"/tiles/{layer}/{{z}}/{{x}}/{{y}}.mvt" for layer in
         ("streets", "manholes", "compounds", "road_damage", "debris_piles")}
ALERTS = [
    {"id": 7, "kind": "manhole_tilt", "severity": "critical", "status": "open",
     "reason": "Tilt 14.5 degrees from baseline (alarm at 10) <b>", "asset_layer": "manholes",
     "asset_external_id": "MH-0007", "opened_at": datetime(2026, 10, 30, 8, 15, tzinfo=UTC),
     "geometry": {"type": "Point", "coordinates": [108.541, 32.521]}},
    {"id": 8, "kind": "road_wear", "severity": "medium", "status": "acknowledged",
     "reason": "PCI 58 now, forecast 52 in 90 days", "asset_layer": "streets",
     "asset_external_id": "ST-1", "opened_at": datetime(2026, 10, 1, tzinfo=UTC),
     "geometry": {"type": "LineString", "coordinates": [[108.54, 32.52], [108.545, 32.522]]}},
]


class Links(HTMLParser):
    """Every script src, link href and img src of a page."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            if tag in ("script", "link", "img", "iframe") and attrs.get(name) is not None:
                self.urls.append(attrs[name])


def _links(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.urls


def _assert_offline(html: str) -> None:
    urls = _links(html)
    remote = [u for u in urls if re.match(r"^(https?:)?//", u)]
    assert remote == [], f"links to other hosts: {remote}"
    for url in urls:
        assert url.startswith(("/static/vendor/", "data:")), url
        if url.startswith("/static/"):
            assert (STATIC_DIR / url.removeprefix("/static/")).is_file(), url
    # No CDN address anywhere in the page's own code either.
    assert not re.search(r"//[\w.-]*(cdn|unpkg|jsdelivr|cloudflare|jquery|openstreetmap)",
                         html, re.I)


def _crew_html() -> str:
    return crew_map(ALERTS, TILES).get_root().render()


def _planner_html(**extra) -> str:
    return planner_map(
        TILES, forecasts={90: {1: (52.0, 47.0, 57.0)}, 365: {1: (40.0, 30.0, 50.0)}},
        forecast_as_of="2026-10-31",
        damage=damage_density([(108.54, 32.52, "high"), (108.55, 32.53, "low")]),
        hotspots=debris_hotspots([(108.54, 32.52, None)] * 3), **extra).get_root().render()


def test_crew_map_has_alerts_layers_legend_and_actions():
    html = _crew_html()
    _assert_offline(html)
    assert html.count("L.marker(") == 2
    assert "L.markerClusterGroup(" in html and "L.control.locate(" in html
    for name in ("Manholes", "Road damage", "Debris piles", "Alerts"):
        assert f'"{name}"' in html  # in the layer control
    assert "twin-legend" in html and "Alerts by severity" in html
    for layer in ("manholes", "road_damage", "debris_piles"):
        assert f"/tiles/{layer}/" in html
    assert "twinAct(7" in html and "function twinAct(" in html
    popup = alert_popup(ALERTS[0], 32.521, 108.541)
    assert "twinAct(7, 'acknowledge', this)" in popup and "twinAct(7, 'resolve', this)" in popup
    assert "Why: Tilt 14.5 degrees from baseline (alarm at 10) &lt;b&gt;" in popup  # escaped
    assert "Since: Oct 30, 2026 08:15 UTC" in popup and "MH-0007" in popup
    assert "Manhole cover tilted" in popup and "32.52100 N, 108.54100 E" in popup
    assert "tile.openstreetmap" not in html and "L.tileLayer(" not in html


def test_planner_map_has_condition_forecasts_density_hotspots_and_legend():
    html = _planner_html()
    _assert_offline(html)
    for name in ("Street condition now (PCI)", "Forecast PCI in 90 days",
                 "Forecast PCI in 365 days", "Compounds by management type",
                 "Manholes by status", "Road damage density (last year)",
                 "Debris hotspots (reports per 100 m cell)"):
        assert f'"{name}"' in html, name
    assert "L.heatLayer(" in html and "twin-legend" in html
    assert "Good (86-100)" in html and "Failed (0-10)" in html
    assert '"90": {"1": [52.0, 47.0, 57.0]}' in html


def test_planner_map_without_forecasts_says_so():
    html = planner_map(TILES).get_root().render()
    assert "No forecast yet" in html and "Forecast PCI in" not in html
    _assert_offline(html)


def test_offline_file_inlines_every_asset_and_takes_geojson():
    geojson = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [108.54, 32.52]},
         "properties": {"id": 1, "status": "none"}}]}
    html = inline_assets(crew_map(ALERTS, {"manholes": geojson}).get_root().render())
    assert _links(html) == ["data:,"]  # only the empty favicon
    assert "L.vectorGrid.slicer(" in html and "/tiles/" not in html
    assert "L.VectorGrid" in html and "markerClusterGroup" in html  # the libraries, inlined
    assert "url(images/" not in html  # Leaflet's images became data URIs
    _assert_offline(html)


def test_an_asset_that_is_not_vendored_is_refused():
    m = folium.Map(tiles=None)
    Fullscreen().add_to(m)
    with pytest.raises(AssetMissing, match="not vendored"):
        use_local_assets(m)


def test_every_vendored_package_has_its_licence():
    for path in {p.split("/")[0] for p in LOCAL.values() if p}:
        folder = STATIC_DIR / "vendor" / path
        assert any(f.name.upper().startswith(("LICENSE", "MIT-LICENCE")) for f in
                   folder.iterdir()), folder
    for path in LOCAL.values():
        assert path is None or (STATIC_DIR / "vendor" / path).is_file(), path


def test_damage_density_and_debris_hotspots():
    assert damage_density([]) == []
    heat = damage_density([(108.54, 32.52, "high")] * 3 + [(108.56, 32.53, "low")])
    assert sorted(w for *_, w in heat) == [pytest.approx(1 / 9, rel=1e-3), 1.0]
    cells = debris_hotspots([(108.54, 32.52, datetime(2026, 5, 1, tzinfo=UTC))] * 4
                            + [(108.56, 32.53, None)], min_reports=2)
    assert len(cells["features"]) == 1
    props = cells["features"][0]["properties"]
    assert props == {"reports": 4, "last_seen": "2026-05-01", "level": 3}
