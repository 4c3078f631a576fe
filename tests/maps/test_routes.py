"""The map routes and ``twin map`` on the sample twin (a real PostGIS, no browser)."""

import json
import re

from typer.testing import CliRunner

from geo import alerts, predictions
from service.cli import app as twin_app


def test_crew_map_page(maps_client, sample_engine):
    with sample_engine.begin() as conn:
        manhole = predictions.sensor_manholes(conn).iloc[0]
        alerts.raise_alert(conn, kind="manhole_gas", severity="critical",
                           asset_layer="manholes", asset_id=int(manhole.asset_id),
                           geom_ewkt=manhole.geom_ewkt, reason="H2S 14 ppm (alarm at 10)")
    response = maps_client.get("/map")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "H2S 14 ppm (alarm at 10)" in html and "Gas in manhole" in html
    assert "/tiles/manholes/{z}/{x}/{y}.mvt?properties=status," in html
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_planner_map_page(maps_client):
    response = maps_client.get("/map/planner", params={"horizon": [90]})
    assert response.status_code == 200
    html = response.text
    assert "/tiles/streets/" in html and "/tiles/compounds/" in html
    assert "L.heatLayer(" in html and "Debris hotspots" in html
    assert "No forecast yet" in html  # nothing scored in this database
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_bad_horizons_are_a_400(maps_client):
    for params in ({"horizon": 0}, {"horizon": "soon"}, {"horizon": list(range(1, 9))}):
        response = maps_client.get("/map/planner", params=params)
        assert response.status_code == 400, params
        assert response.headers["content-type"] == "application/problem+json"


def test_vendored_files_are_served(maps_client):
    response = maps_client.get("/static/vendor/leaflet/leaflet.js")
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert response.headers.get("etag")
    assert maps_client.get("/static/vendor/leaflet/images/layers.png").status_code == 200
    assert maps_client.get("/static/vendor/nothing.js").status_code == 404
    assert maps_client.get("/static/../routers/maps.py").status_code == 404
    assert maps_client.get("/static/../assets.py").status_code == 404  # beside maps/static


def test_twin_map_writes_a_page_that_works_from_disk(sample_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_DATABASE_URL",
                       sample_engine.url.render_as_string(hide_password=False))
    runner = CliRunner()
    out = tmp_path / "planner.html"
    result = runner.invoke(twin_app, ["map", "--kind", "planner", "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "<script src=" not in html and '<link rel="stylesheet"' not in html
    assert "L.vectorGrid.slicer(" in html and "/tiles/" not in html
    streets = re.search(r'L\.vectorGrid\.slicer\((\{"features".*?\}), options\)', html, re.S)
    assert streets and len(json.loads(streets[1])["features"]) == 394

    crew = tmp_path / "crew.html"
    result = runner.invoke(twin_app, ["map", "--kind", "crew", "--out", str(crew)])
    assert result.exit_code == 0, result.output
    assert "<script src=" not in crew.read_text()

    bad = runner.invoke(twin_app, ["map", "--kind", "bus", "--out", str(crew)])
    assert bad.exit_code == 2 and "not one of crew, planner" in bad.output
