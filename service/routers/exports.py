"""Exports for GIS analysts: ``GET /exports/{layer}.{gpkg|geojson|csv|shp.zip|parquet|fgb}``.

A CSV's side files are beside it: ``{layer}.csvt`` (column types) and ``{layer}.prj`` (CRS), so
GDAL opening ``/vsicurl_streaming/.../exports/streets.csv`` finds them as it does on disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from geo.layers import LAYERS
from service import export_formats
from service.deps import ReaderDep, ReaderEngineDep
from service.errors import problem_response
from service.language import LANGUAGE_PARAMETER

router = APIRouter(tags=["exports"])

FILE_BLOCK_BYTES = 256 * 1024
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: problem_response("Reading needs a valid API key here.")}
_FORMATS_TEXT = ", ".join(f"`{f.suffix}` ({f.title})" for f in export_formats.FORMATS.values())


def _disposition(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def _file_blocks(handle: BinaryIO) -> Iterator[bytes]:
    try:
        while block := handle.read(FILE_BLOCK_BYTES):
            yield block
    finally:
        handle.close()


@router.get("/exports", summary="What can be exported", responses=_UNAUTHORIZED)
def list_exports(request: Request, caller: ReaderDep) -> dict:
    """The layers and formats, with the link of each export."""
    return {
        "formats": [{"suffix": f.suffix, "title": f.title, "type": f.media_type}
                    for f in export_formats.FORMATS.values()],
        "layers": [{
            "id": layer.id, "title": layer.title, "description": layer.description,
            "links": [{"href": str(request.url_for("export_layer", layer=layer.id,
                                                   suffix=f.suffix)),
                       "rel": "enclosure", "type": f.media_type, "title": f.title}
                      for f in export_formats.FORMATS.values()],
        } for layer in LAYERS.values()],
    }


@router.get(
    "/exports/{layer}.{suffix}",
    name="export_layer",
    summary="Download a layer as a file",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The file, as an attachment.",
              "content": {f.media_type: {} for f in export_formats.FORMATS.values()}},
        400: problem_response("A bad bbox, datetime, properties or filter."),
        404: problem_response("No such layer or format."),
        **_UNAUTHORIZED,
    },
)
def export_layer(
    request: Request,
    engine: ReaderEngineDep,
    caller: ReaderDep,
    layer: Annotated[str, PathParam(description="A layer id: " + ", ".join(LAYERS) + ".")],
    suffix: Annotated[str, PathParam(description="The format: " + _FORMATS_TEXT + "; or "
                                     "`csvt` / `prj`, the side files of the CSV.")],
    bbox: Annotated[str | None, Query(
        description="west,south,east,north in degrees (EPSG:4326): features intersecting it.",
        examples=["108.53,32.515,108.54,32.52"])] = None,
    datetime: Annotated[str | None, Query(
        description="The state of the twin at this time (RFC 3339 with an offset; a date "
                    "alone means the end of that day): the latest readings and the "
                    "observations made by then. An interval `start/end` (`..` open) gives "
                    "the state at its end with, for observations, only those made from "
                    "its start.",
        examples=["2025-06-01T00:00:00Z"])] = None,
    properties: Annotated[str | None, Query(
        description="Comma-separated properties to include, in this order (default: all; "
                    "the id and geometry always come).")] = None,
    filter_: Annotated[str | None, Query(
        alias="filter", description="A CQL2 filter, as on the OGC API items of the layer "
        "(`/ogc/collections/{layer}/queryables` lists what it may name).",
        examples=["pci < 55 AND road_class = 'primary'"])] = None,
    filter_lang: Annotated[Literal["cql2-text", "cql2-json", "cql-text"] | None, Query(
        alias="filter-lang", description="`cql2-text` (default) or `cql2-json`.")] = None,
    filter_crs: Annotated[str | None, Query(
        alias="filter-crs", description="The CRS of the filter's coordinates (default "
        "CRS84).")] = None,
) -> StreamingResponse:
    """Export a layer, whole or filtered, as GeoPackage, GeoJSON, CSV, Shapefile or GeoParquet.

    Every format is in EPSG:4326 (longitude, latitude) with the layer's types kept:
    integers, reals, dates and date-times as such where the format has them. Any other query
    parameter named like one of the layer's properties keeps only the features whose property
    equals the value (repeat it for any of several values), as in OGC API items.

    GeoJSON and CSV are streamed while the rows are read from a server-side cursor;
    GeoPackage, Shapefile and GeoParquet are built chunk by chunk in a temporary file which is
    then streamed. Either way the service holds one chunk of 10,000 rows at a time, whatever
    the layer's size.
    """
    filters = [(name, value) for name, value in request.query_params.multi_items()
               if name not in export_formats.EXPORT_PARAMETERS and name != LANGUAGE_PARAMETER]
    if suffix.lower() in export_formats.CSV_SIDE_FILES:
        side = suffix.lower()
        query = export_formats.export_query(export_formats.find_layer(layer), bbox=bbox,
                                       datetime_text=datetime, properties=properties,
                                       filters=filters)
        return StreamingResponse(
            iter([export_formats.csv_side_file(engine, query, side).encode()]),
            media_type="text/plain; charset=utf-8",
            headers=_disposition(f"{query.layer.id}.{side}"))
    found, fmt = export_formats.split_file_name(f"{layer}.{suffix}")
    query = export_formats.export_query(found, bbox=bbox, datetime_text=datetime,
                                   properties=properties, filters=filters, cql=filter_,
                                   cql_lang=filter_lang, cql_crs=filter_crs)
    filename = f"{found.id}.{fmt.suffix}"
    if fmt.streamed:
        return StreamingResponse(export_formats.stream_export(engine, query, fmt),
                                 media_type=fmt.media_type, headers=_disposition(filename))
    scratch = Path(tempfile.mkdtemp(prefix="twin-export-"))
    try:
        written = export_formats.write_export(engine, query, fmt, scratch)
        handle = open(written.path, "rb")  # noqa: SIM115 - closed by the response
    finally:
        # The open handle keeps the file's data until it is closed, so the temporary file is
        # gone from disk now even if the client goes away before reading it all.
        shutil.rmtree(scratch, ignore_errors=True)
    headers = {**_disposition(filename), "Content-Length": str(os.fstat(handle.fileno()).st_size)}
    return StreamingResponse(_file_blocks(handle), media_type=fmt.media_type, headers=headers,
                             background=BackgroundTask(handle.close))
