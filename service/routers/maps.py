"""Maps for people: ``GET /map`` (crews), ``GET /map/planner``, ``GET /map/3d`` and their files.

The pages are folium (or MapLibre) maps whose scripts and style sheets are served from
``/static`` by the twin itself (``maps/static``): no public CDN, no base-map tiles from the
internet. What each page shows is gathered and drawn in ``service/map_pages.py``, which
``twin map`` uses too.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from geo.errors import InvalidInput
from geo.i18n import _
from maps.assets import STATIC_DIR
from service.deps import ReaderDep, reader_engine
from service.map_pages import DEFAULT_HORIZONS, render_3d, render_crew, render_planner

router = APIRouter(tags=["maps"])
router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

MAX_HORIZONS = 6


_HTML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "The map page."}}


@router.get("/map", summary="The crew map: active alerts to acknowledge and resolve",
            response_class=HTMLResponse, responses=_HTML)
def crew_page(request: Request, caller: ReaderDep) -> HTMLResponse:
    """Active alerts by severity (clustered), manholes, damage and debris, the crew's position.

    Acting on an alert asks for a crew API key once; the browser keeps it.
    """
    return HTMLResponse(render_crew(reader_engine(request.app.state)),
                        headers={"Cache-Control": "no-cache"})


@router.get("/map/3d", summary="The 3D view: houses by height over streets, manholes, alerts",
            response_class=HTMLResponse, responses=_HTML)
def three_d_page(request: Request, caller: ReaderDep) -> HTMLResponse:
    """Houses extruded by their height, by compound type or by the matters open at them.

    Streets by condition now or forecast; manholes and active alerts. Tilt and rotate
    with a right-drag or Ctrl-drag. MapLibre GL over the twin's own tiles and style.
    """
    return HTMLResponse(render_3d(reader_engine(request.app.state)),
                        headers={"Cache-Control": "no-cache"})


@router.get("/map/planner", summary="The planner map: condition now and forecast, hotspots",
            response_class=HTMLResponse, responses=_HTML)
def planner_page(
    request: Request,
    caller: ReaderDep,
    horizon: Annotated[list[int] | None, Query(
        description="Forecast horizons in days to offer as street colourings (repeat); "
                    "default 30, 90 and 365. Horizons never scored are left out.")] = None,
) -> HTMLResponse:
    """Streets by PCI band, now and forecast; damage, debris, manholes and compounds.

    Streets are coloured by their latest PCI or, chosen in the layer control, by the newest
    forecast at a horizon; damage density covers the last year of observations.
    """
    chosen = tuple(dict.fromkeys(horizon or DEFAULT_HORIZONS))
    if len(chosen) > MAX_HORIZONS or any(not 1 <= h <= 3650 for h in chosen):
        raise InvalidInput(_("Give at most {count} horizons, each 1 to 3650 days.",
                             count=MAX_HORIZONS))
    return HTMLResponse(render_planner(reader_engine(request.app.state), chosen),
                        headers={"Cache-Control": "no-cache"})
