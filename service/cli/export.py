"""``twin export``: write a layer to a file, as ``GET /exports`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geo.errors import InvalidInput, NotFound, TwinError
from geo.i18n import _, format_decimal, ngettext
from geo.layers import LAYERS
from service.cli.common import console, fail, open_engine

# service.export_formats (and SQLAlchemy with it) is imported when the command runs, so that
# registering this command costs other `twin` commands nothing; a test checks this list
# against export_formats.FORMATS.
FORMAT_HELP = "gpkg, geojson, csv, shp.zip, parquet or fgb"


def export(
    layer: Annotated[str, typer.Argument(
        help=f"The layer: {', '.join(LAYERS)}.", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", help="The file to write (replaced if it exists).", show_default=False)],
    format_: Annotated[str | None, typer.Option(
        "--format", help=f"{FORMAT_HELP} (default: from --out's name).")] = None,
    bbox: Annotated[str | None, typer.Option(
        help="west,south,east,north in degrees: features intersecting it.")] = None,
    datetime_text: Annotated[str | None, typer.Option(
        "--datetime", help="The state of the twin at this time (RFC 3339, e.g. "
                           "2025-06-01T00:00:00Z; a date alone: the end of that day), or an "
                           "interval START/END.")] = None,
    where: Annotated[list[str] | None, typer.Option(
        "--where", help="PROPERTY=VALUE: keep features whose property equals VALUE; "
                        "repeat for more (one property repeated: any of its values).")] = None,
    district: Annotated[list[str] | None, typer.Option(
        "--district", help="Keep features whose district (the finest district they lie in, "
                           "by name) is this; repeat for more. `--where community=NAME` keeps "
                           "a whole community.")] = None,
    properties: Annotated[str | None, typer.Option(
        help="Comma-separated properties to write, in this order (default: all).")] = None,
    filter_: Annotated[str | None, typer.Option(
        "--filter", help="A CQL2 text filter, e.g. \"pci < 55 AND road_class = 'primary'\" "
                         "(as the OGC API's filter).")] = None,
) -> None:
    """Export LAYER to a GeoPackage, GeoJSON, CSV, zipped Shapefile, GeoParquet or FlatGeobuf.

    Types and the CRS (EPSG:4326) are kept (a CSV gets them in a .csvt and a .prj beside it);
    the file appears only once it is complete.

    Exit codes: 0 written, 2 unusable input (nothing written), 1 other errors.
    """
    from service import export_formats

    try:
        try:
            found = export_formats.find_layer(layer)
            fmt = (export_formats.find_format(format_) if format_ is not None
                   else export_formats.format_of_path(out))
        except NotFound as error:  # a name the user typed: unusable input, exit 2
            raise InvalidInput(str(error)) from None
        filters = []
        for item in where or []:
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise InvalidInput(_("--where '{item}' is not PROPERTY=VALUE.", item=item))
            filters.append((name.strip(), value))
        filters += [("district", name) for name in district or []]
        query = export_formats.export_query(found, bbox=bbox, datetime_text=datetime_text,
                                       properties=properties, filters=filters, cql=filter_)
        engine = open_engine()
        written = export_formats.write_export_to(engine, query, fmt, out)
    except TwinError as error:
        raise fail(error) from None
    console.print(ngettext(
        "Wrote {n} feature of {layer} to {out} ({format}, {size} bytes).",
        "Wrote {n} features of {layer} to {out} ({format}, {size} bytes).", written.features,
        layer=found.id, out=str(out), format=fmt.title,
        size=format_decimal(out.stat().st_size)), highlight=False)
    if written.side_files:
        console.print(_("Beside it, for GDAL and QGIS: {files} (column types and CRS).",
                        files=", ".join(side.name for side in written.side_files)),
                      highlight=False)
