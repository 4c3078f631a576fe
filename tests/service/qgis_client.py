"""What an analyst does in QGIS, headless: run by Debian's python3 (which has PyQGIS), not pytest.

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/service/qgis_client.py BASE_URL OUT_DIR L1,L2..

For every layer named: opens it through QGIS's native OGC API - Features provider (OAPIF),
counts its features and styles it with the twin's QML for it (``/styles/twin/{layer}.qml``);
opens its vector tiles as a QGIS vector tile layer with the twin's own
style for that layer (``/styles/twin/{layer}.json``, converted by QGIS's MapLibre converter),
and renders the streets' tiles alone to ``OUT_DIR/streets.png``, the OAPIF streets alone to
``OUT_DIR/oapif-streets.png``, and all tile layers together
to ``OUT_DIR/twin.png``. Prints one JSON object: counts, validity, converter warnings and, for
each image, how many pixels have each exact colour.
"""

import json
import os
import sys
import urllib.request
from collections import Counter
from pathlib import Path


def main() -> int:  # noqa: D103 (a script)
    # Imported here: pytest imports this module for doctests in an environment without QGIS.
    from qgis.core import (
        QgsApplication,
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsDataSourceUri,
        QgsMapBoxGlStyleConversionContext,
        QgsMapBoxGlStyleConverter,
        QgsMapRendererSequentialJob,
        QgsMapSettings,
        QgsProject,
        QgsRectangle,
        QgsVectorLayer,
        QgsVectorTileLayer,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    base, out_dir, names = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(",")
    app = QgsApplication([], False)
    app.initQgis()
    report: dict = {"oapif": {}, "tiles": {}, "images": {}}
    tile_layers = {}
    oapif_layers = {}
    for name in names:
        oapif = QgsVectorLayer(f"url='{base}/ogc' typename='{name}'", name, "OAPIF")
        count = sum(1 for _ in oapif.getFeatures()) if oapif.isValid() else None
        ids = oapif.fields().names() if oapif.isValid() else []
        # The layer's QGIS style as an analyst loads it: the QML file from the service.
        qml_path = out_dir / f"{name}.qml"
        with urllib.request.urlopen(f"{base}/styles/twin/{name}.qml") as response:
            qml_path.write_bytes(response.read())
        message, styled = oapif.loadNamedStyle(str(qml_path))
        renderer = oapif.renderer()
        rules = [r.filterExpression() for r in renderer.rootRule().children()] \
            if renderer is not None and renderer.type() == "RuleRenderer" else []
        report["oapif"][name] = {"valid": oapif.isValid(), "count": count, "fields": ids,
                                 "styled": styled, "style_message": message, "rules": rules,
                                 "geometry": oapif.wkbType(),
                                 "renderer": renderer.type() if renderer else None}
        oapif_layers[name] = oapif

        uri = QgsDataSourceUri()
        uri.setParam("type", "xyz")
        uri.setParam("url", f"{base}/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt")
        uri.setParam("zmin", "0")
        uri.setParam("zmax", "22")
        layer = QgsVectorTileLayer(bytes(uri.encodedUri()).decode(), name)
        with urllib.request.urlopen(f"{base}/styles/twin/{name}.json") as response:
            style = json.load(response)
        converter = QgsMapBoxGlStyleConverter()
        converter.convert(style, QgsMapBoxGlStyleConversionContext())
        layer.setRenderer(converter.renderer())
        report["tiles"][name] = {
            "valid": layer.isValid(), "warnings": converter.warnings(),
            "styles": [{"name": s.styleName(), "filter": s.filterExpression(),
                        "colour": s.symbol().color().name() if s.symbol() else None}
                       for s in converter.renderer().styles()]}
        QgsProject.instance().addMapLayer(layer)
        tile_layers[name] = layer

    # The extent of the streets, from their features, in the tiles' CRS (EPSG:3857).
    streets = QgsVectorLayer(f"url='{base}/ogc' typename='streets'", "s", "OAPIF")
    box = QgsRectangle()
    for feature in streets.getFeatures():
        box.combineExtentWith(feature.geometry().boundingBox())
    mercator = QgsCoordinateReferenceSystem("EPSG:3857")
    to_mercator = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), mercator,
                                         QgsProject.instance())
    extent = to_mercator.transformBoundingBox(box)

    def render(file_name: str, layers: list) -> None:
        settings = QgsMapSettings()
        settings.setLayers(layers)
        settings.setDestinationCrs(mercator)
        settings.setOutputSize(QSize(1400, 1400))
        settings.setBackgroundColor(QColor("#ffffff"))
        settings.setExtent(extent)
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()
        image = job.renderedImage()
        image.save(str(out_dir / file_name), "PNG")
        colours: Counter = Counter()
        for y in range(image.height()):
            for x in range(image.width()):
                colours[QColor(image.pixel(x, y)).name()] += 1
        report["images"][file_name] = dict(colours.most_common(200))

    if "streets" in tile_layers:
        render("streets.png", [tile_layers["streets"]])
        render("oapif-streets.png", [oapif_layers["streets"]])
    # QGIS draws the first layer of the list on top; alerts last in the twin's draw order.
    # The backlog is left out here: it is drawn over the very streets it lists, on purpose.
    render("twin.png", [tile_layers[n] for n in reversed(names) if n != "backlog"])
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    # os._exit: PyQGIS 3.22 can crash while tearing its objects down at interpreter exit,
    # after the work is done and reported.
    os._exit(main())
