"""QGIS as a client: every layer through OGC API - Features, the tiles with the twin's style.

QGIS runs headless (``QT_QPA_PLATFORM=offscreen``) in Debian's own Python, which has PyQGIS,
as a separate process over real HTTP (tests/service/qgis_client.py).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from geo.layers import LAYERS
from maps.maplibre import draw_rank
from maps.styles import NO_DATA, PCI_BANDS, pci_colour
from tests.tools import requires_tool

pytestmark = requires_tool("qgis", "/usr/bin/qgis")

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-qgis installs PyQGIS
CLIENT = Path(__file__).with_name("qgis_client.py")
# Every published layer, in the style's draw order (QGIS gets them bottom first).
OPENED = tuple(layer.id for layer in sorted(LAYERS.values(), key=draw_rank))


@pytest.fixture(scope="module")
def qgis_report(live_url, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("qgis")
    done = subprocess.run(
        [SYSTEM_PYTHON, str(CLIENT), live_url, str(out), ",".join(OPENED)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": "",
             "XDG_RUNTIME_DIR": str(out)})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["dir"] = str(out)
    print(f"QGIS renders in {out}", file=sys.stderr)
    return report


def test_every_layer_opens_in_qgis_with_the_database_counts(qgis_report, sample_engine):
    with sample_engine.connect() as conn:
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
        for layer_id in OPENED:
            expected = conn.execute(sa.text(
                f"SELECT count(*) FROM ({LAYERS[layer_id].select}) s"), {"as_of": now}
            ).scalar_one()
            opened = qgis_report["oapif"][layer_id]
            assert opened["valid"], layer_id
            assert opened["count"] == expected, layer_id
            assert qgis_report["tiles"][layer_id]["valid"], layer_id


def test_every_layer_takes_its_qml_style(qgis_report):
    for layer_id in OPENED:
        opened = qgis_report["oapif"][layer_id]
        assert opened["styled"], (layer_id, opened["style_message"])
        if opened["count"]:  # an empty collection gives QGIS no geometry type to draw
            assert opened["renderer"] == "RuleRenderer", (layer_id, opened)
            assert all(opened["rules"]) or len(opened["rules"]) == 1, (layer_id, opened)
    assert len(qgis_report["oapif"]["streets"]["rules"]) == len(PCI_BANDS) + 1


def test_qgis_converts_the_published_style_without_loss(qgis_report):
    for layer_id in OPENED:
        converted = qgis_report["tiles"][layer_id]
        assert converted["warnings"] == [], (layer_id, converted["warnings"])
        assert all(s["filter"] or len(converted["styles"]) <= 2 for s in converted["styles"])
    streets = qgis_report["tiles"]["streets"]["styles"]
    assert {s["colour"] for s in streets} == {c for _, _, c in PCI_BANDS} | {NO_DATA}


def test_streets_come_out_in_their_condition_colours(qgis_report, sample_engine):
    with sample_engine.connect() as conn:
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
        pcis = conn.execute(sa.text(
            f"SELECT s.pci FROM ({LAYERS['streets'].select}) s"), {"as_of": now}).scalars().all()
    lengths: dict[str, int] = {}
    for value in pcis:
        lengths[pci_colour(value)] = lengths.get(pci_colour(value), 0) + 1
    palette = {c for _, _, c in PCI_BANDS} | {NO_DATA}
    # Through the tiles with the MapLibre style and through OGC API with the QML alike:
    # every band that holds at least three streets shows in its own colour, and no colour of
    # the streets' image is a PCI colour the database does not have.
    for image in ("streets.png", "oapif-streets.png"):
        drawn = {colour for colour, n in qgis_report["images"][image].items() if n >= 20}
        assert {c for c, n in lengths.items() if n >= 3} <= drawn, image
        assert drawn & palette <= set(lengths), image
    # The whole twin drawn together still shows the streets' colours: no layer's
    # background hides the others.
    together = qgis_report["images"]["twin.png"]
    assert {c for c, n in lengths.items() if n >= 3} <= {c for c, n in together.items() if n >= 5}
