"""A tile's query: the parameters of tile and TileJSON routes, documented once and validated.

:func:`build_tile_request` turns what a client asked for into a typed
:class:`geo.tiles.TileRequest`, refusing what is wrong with one sentence; the text is read by
the service's shared parsers (:mod:`service.params`), so geo gets typed values only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query

from geo import tiles
from geo.errors import InvalidInput
from geo.i18n import _
from service import params

# The query parameters a TileJSON carries on into its tile URLs.
FORWARDED = ("datetime", "properties", "status", "severity", "kind", "district", "horizon",
             "limit", "extent", "buffer", "clip")


@dataclass(frozen=True)
class TileQuery:
    """The query parameters of a tile (and of a TileJSON, which passes them on)."""

    datetime: str | None
    properties: str | None
    status: str | None
    severity: str | None
    kind: str | None
    district: str | None
    horizon: str | None
    limit: int
    extent: int
    buffer: int
    clip: bool

    def request(self, layer: str, z: int = 0, x: int = 0, y: int = 0) -> tiles.TileRequest:
        """Validate into a tile request (404 for unknown layer or tile, 400 for bad values)."""
        return build_tile_request(
            layer, z, x, y, datetime_text=self.datetime, properties_text=self.properties,
            filters={"status": self.status, "severity": self.severity, "kind": self.kind,
                     "district": self.district, "horizon_days": self.horizon},
            limit=self.limit, extent=self.extent, buffer=self.buffer, clip=self.clip)


def build_tile_request(
    layer_id: str, z: int, x: int, y: int, *, datetime_text: str | None = None,
    properties_text: str | None = None, filters: dict[str, str | None] | None = None,
    limit: int = tiles.DEFAULT_LIMIT, extent: int = tiles.DEFAULT_EXTENT,
    buffer: int = tiles.DEFAULT_BUFFER, clip: bool = True,
) -> tiles.TileRequest:
    """Validate what a client asked for, as typed.

    ``datetime_text`` is one ISO 8601 instant (a date: its midnight; no offset: UTC);
    ``properties_text`` a comma list (``None``: all, empty: none); ``filters`` maps a
    property of :data:`tiles.FILTERABLE` to a comma list of values (``None``: no filter).
    The text is read by the service's shared parsers, :mod:`service.params`; geo gets
    typed values only.

    Raises
    ------
    NotFound
        For an unknown layer or a tile outside the tile matrix set.
    InvalidInput
        For unknown properties, bad filters, a bad datetime or numbers out of range.
    """
    layer = params.find_layer(layer_id)
    tiles.check_tile(z, x, y)
    if not 1 <= limit <= tiles.MAX_LIMIT:
        raise InvalidInput(_("limit must be from 1 to {most}, not {limit}.", most=tiles.MAX_LIMIT,
                             limit=limit))
    if not 256 <= extent <= 16384:
        raise InvalidInput(_("extent must be from 256 to 16384, not {extent}.", extent=extent))
    if not 0 <= buffer <= extent:
        raise InvalidInput(_("buffer must be from 0 to the extent ({extent}), not {buffer}.",
                             extent=extent, buffer=buffer))
    as_of = None  # now
    if datetime_text is not None and datetime_text.strip():
        as_of = params.parse_instant(datetime_text, rfc3339=False)
    properties = (layer.property_names if properties_text is None
                  else params.parse_properties(layer, properties_text))
    found = params.parse_filters(
        layer, [(name, text) for name, text in (filters or {}).items() if text is not None],
        names=tiles.FILTERABLE, comma_lists=True, max_values=tiles.MAX_FILTER_VALUES,
        max_chars=tiles.MAX_FILTER_VALUE_CHARS,
        choices={name: values for (owner, name), values in tiles.VOCABULARIES.items()
                 if owner == layer.id})
    # Sorted, so that one query written differently is one tile (one ETag, one cache entry).
    # (Values keep their type: a horizon is compared with an integer column.)
    canonical = tuple(sorted((name, tuple(sorted(values, key=str))) for name, values in found))
    return tiles.TileRequest(layer.id, z, x, y, as_of, properties, canonical, limit, extent,
                             buffer, clip)


def _one_of(what: str, layers: str) -> Any:
    # A filter's query parameter: a comma list of the values to keep (``layers``: where).
    return Query(max_length=2000,
                 description=f"Only features whose {what} is one of these (comma list){layers}")


async def tile_query(
    datetime_: Annotated[str | None, Query(
        alias="datetime", max_length=64,
        description="The twin as of this instant (ISO 8601, e.g. `2026-06-01T00:00:00Z`; a "
        "date means its midnight UTC): latest readings and the observations and alerts made "
        "by then. Default: now.")] = None,
    properties: Annotated[str | None, Query(
        max_length=2000,
        description="Comma-separated properties to put in the tile (default all; empty: only "
        "ids). An unknown name is a 400.")] = None,
    status: Annotated[str | None, _one_of(
        "`status`", ", on layers with a status: alerts (open, acknowledged, in_progress, "
        "resolved, dismissed), manholes (none, low, medium, high, critical).")] = None,
    severity: Annotated[str | None, _one_of(
        "`severity`", ": alerts (low, medium, high, critical), road_damage (low, medium, "
        "high).")] = None,
    kind: Annotated[str | None, _one_of("`kind`", ": alerts, manholes, parking.")] = None,
    district: Annotated[str | None, _one_of(
        "`district` (the finest district they lie in, by name)",
        "; every layer but districts.")] = None,
    horizon: Annotated[str | None, Query(
        max_length=200,
        description="forecasts only: the horizons in days to show (comma list, e.g. `90`); "
        "without it a tile holds every horizon's forecast of an asset, one over another.")
    ] = None,
    limit: Annotated[int, Query(
        ge=1, le=tiles.MAX_LIMIT,
        description="Most features in one tile; keeps low zooms small. A tile that meets "
        "more keeps the most important ones (see the TileJSON's `order`) and says so in its "
        "`Tile-Truncated` header and its `tile_info` layer.")] = tiles.DEFAULT_LIMIT,
    extent: Annotated[int, Query(
        ge=256, le=16384, description="Tile extent in tile coordinate units.")
    ] = tiles.DEFAULT_EXTENT,
    buffer: Annotated[int, Query(
        ge=0, le=16384, description="Buffer around the tile, in tile units, where geometry "
        "is kept so lines and symbols join across tiles.")] = tiles.DEFAULT_BUFFER,
    clip: Annotated[bool, Query(
        description="Clip geometries to the tile plus its buffer.")] = True,
) -> TileQuery:
    """The tile query parameters, documented once for every route that takes them."""
    return TileQuery(datetime_, properties, status, severity, kind, district, horizon, limit,
                     extent, buffer, clip)


TileQueryDep = Annotated[TileQuery, Depends(tile_query)]
