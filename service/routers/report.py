"""Residents' front door: ``/report`` (a phone-first page, no key) and the reporter's status page.

- ``GET /report`` (``?lang=en`` for English; Chinese by default): a map of the twin to drop a
  pin on, or "my compound"; a description and a photo.
- ``POST /report`` (multipart): the same triage, routing and duplicate "+1" as Open311
  (``civic.workflow.submit``); answers the reporter's token and status page.
- ``GET /report/status/{token}`` (``?format=json``): the status and the replies.
- ``GET /report/photos/{id}``: a resident's photo, for callers with a key only.

Abuse limits: slowapi rate limits per device (``X-Device-Id``, which the page keeps in the
browser; else the address) and per client address (``ServiceSettings.report_limit_*``), the
body limit of ``service/limits.py``, and the photo's size and type checked by its bytes. The
router is made per app (:func:`make_router`) so the limiter is built with the app's settings.
"""

from __future__ import annotations

import html
import json
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address
from starlette.concurrency import run_in_threadpool

from civic import workflow
from civic.routing import party_of, party_text
from civic.texts import note_text, pick_lang, text
from geo import requests as store
from geo.errors import Conflict, InvalidInput, NotFound
from geo.i18n import _, format_datetime, local_zone, use_locale
from geo.store import twin_area
from geo.text_rules import check_text
from service.deps import Caller, EngineDep, classifier, require
from service.errors import problem
from service.page_style import PAGE_CSS
from service.photos import check_photo, keep_photo, photo_dir
from service.privacy import mask_personal
from service.settings import ServiceSettings

MAX_DESCRIPTION = 2000
MAX_DEVICE_ID = 64
require_viewer = Depends(require("viewer"))


def device_key(request: Request) -> str:
    """The rate-limit key of a device: its ``X-Device-Id``, else its address."""
    device = (request.headers.get("x-device-id") or "").strip()[:MAX_DEVICE_ID]
    return f"device:{device}" if device else f"addr:{get_remote_address(request)}"


def address_key(request: Request) -> str:
    """The rate-limit key of a client address."""
    return f"addr:{get_remote_address(request)}"


def install_limits(app, limiter: Limiter) -> None:
    """Answer a limit passed with problem+json 429 and a Retry-After."""
    app.state.limiter = limiter

    @app.exception_handler(RateLimitExceeded)
    async def too_many(request: Request, error: RateLimitExceeded):
        return problem(429, _("Too many reports from this device or address (at most "
                              "{limit}); try again later.", limit=error.detail),
                       headers={"Retry-After": "3600"})


def _photo(upload: UploadFile | None, limit: int) -> tuple[bytes, str, str] | None:
    if upload is None:
        return None
    data = upload.file.read(limit + 1)
    return check_photo(data, limit) if data else None


def _point(lat: str | None, long: str | None) -> tuple[float, float] | None:
    if not lat and not long:
        return None
    if not (lat and long):
        raise InvalidInput(_("lat and long must be given together."))
    try:
        lon_v, lat_v = float(long), float(lat)
    except ValueError:
        raise InvalidInput(_("lat and long must be numbers.")) from None
    if not (-180 <= lon_v <= 180 and -90 <= lat_v <= 90):
        raise InvalidInput(_("lat and long must be degrees (-90..90, -180..180)."))
    return lon_v, lat_v


def submit_report(engine, classify: workflow.Classify, *, description: str,
                  point: tuple[float, float] | None, compound: str | None, device: str,
                  photo: tuple[bytes, str, str] | None) -> workflow.Outcome:
    """Store a resident's report and its photo in one transaction."""
    compound_id = None
    with engine.begin() as conn:
        if point is None:
            if not compound:
                raise InvalidInput(_("Place a pin on the map (lat and long) or choose a compound."))
            place = store.compound_place(conn, compound)
            if place is None:
                raise InvalidInput(_("compound: '{compound}' is not a compound of this area.",
                                     compound=compound[:60]))
            point, compound_id = (place["lon"], place["lat"]), place["id"]
        sub = workflow.Submission(
            service_code="other", description=description, actor=f"report:{device}",
            channel="report", point=point, contact={"device_id": device},
            compound_id=compound_id)
        done = workflow.submit(conn, sub, classify)
        if photo is not None:
            data, media, suffix = photo
            digest, relative = keep_photo(data, suffix, "residents/")
            store.add_photo(conn, request_id=done.request_id, media_type=media, size=len(data),
                            sha256=digest, path=relative)
    return done


def _when(value, lang: str) -> str:
    """A time as the resident reads it: their language, the deployment's clock."""
    with use_locale(lang):
        return format_datetime(value, tz=local_zone())


def status_view(engine, token: str, lang: str) -> dict:
    """What the reporter sees: the request (masked) and its status changes and replies."""
    check_text(token, "token", max_chars=200)
    with engine.connect() as conn:
        request_id = store.request_of_token(conn, token)
        if request_id is None:
            raise NotFound(_("There is no request with this token."))
        row = store.public_requests(conn, ids=[request_id])[0]
        history = store.public_history(conn, request_id)
        if row["duplicate_of"]:  # a supporter is told what is said on the matter itself
            history += [h for h in store.public_history(conn, int(row["duplicate_of"]))
                        if h["kind"] == "reply" and h not in history]
        photos = store.photos_of(conn, request_id)
    return {"service_request_id": str(request_id), "status": row["status"],
            "status_notes": note_text(mask_personal(row["status_notes"]), lang),
            "matter": row["matter"],
            "department": row["department"], "responsible_party": row["responsible_party"],
            "responsible": party_of(row, lang),
            "description": mask_personal(row["description"]),
            "requested_at": row["requested_at"], "expected_at": row["expected_at"],
            "supporters": row["supporters"], "duplicate_of": row["duplicate_of"],
            "photos": len(photos),
            "history": [{**h, "note": note_text(mask_personal(h["note"]), lang)}
                        for h in history]}


def make_router(settings: ServiceSettings, database: str = "twin"
                ) -> tuple[APIRouter, Limiter]:
    """The /report routes with a limiter built from the app's settings."""
    router = APIRouter(tags=["residents"])
    # Keys carry the database's name: deployments (and test twins) sharing one Redis keep
    # their counts apart, while every process of one deployment shares them.
    limiter = Limiter(key_func=address_key, storage_uri=settings.rate_limit_storage,
                      headers_enabled=False, key_prefix=f"twin:{database}:")

    @router.get("/report", response_class=HTMLResponse,
                summary="The residents' report page (no key; Chinese, ?lang=en)")
    def report_page(engine: EngineDep, lang: Annotated[str | None, Query(
            description="zh (default) or en.", max_length=5)] = None) -> HTMLResponse:
        """A phone-first page to report a problem with a place, a photo and a description."""
        with engine.connect() as conn:
            choices = store.compound_choices(conn)
            extent = twin_area(conn)
        return HTMLResponse(report_html(pick_lang(lang), choices, extent))

    @router.post("/report", status_code=201, summary="Report a problem (no key; multipart)")
    @limiter.limit(settings.report_limit_address, key_func=address_key)
    @limiter.limit(settings.report_limit_device, key_func=device_key)
    async def report(request: Request, engine: EngineDep,
                     description: Annotated[str, Form(description="What is wrong.")],
                     lat: Annotated[str | None, Form()] = None,
                     long: Annotated[str | None, Form()] = None,
                     compound: Annotated[str | None, Form(
                         description="A compound's external id (\"my compound\").")] = None,
                     lang: Annotated[str | None, Form()] = None,
                     photo: Annotated[UploadFile | None, File(
                         description="JPEG, PNG or WebP.")] = None) -> JSONResponse:
        """Take a resident's report: triaged, routed, joined to a duplicate as a "+1"."""
        language = pick_lang(lang)
        description = check_text(description.strip(), "description",
                                 max_chars=MAX_DESCRIPTION, free_text=True)
        if not description:
            raise InvalidInput(_("description: say what is wrong."))
        if compound:
            check_text(compound, "compound", max_chars=100)
        device = device_key(request)
        point = _point(lat, long)
        image = await run_in_threadpool(_photo, photo, settings.report_photo_max_bytes)
        try:
            done = await run_in_threadpool(
                submit_report, engine, classifier(request), description=description,
                point=point, compound=compound or None, device=device, photo=image)
        except workflow.Refused as error:
            return problem(error.status if error.status != 403 else 429, str(error))
        url = f"/report/status/{done.token}" + ("?lang=en" if language == "en" else "")
        notice = text(f"matter.{done.matter}", language)
        if done.duplicate_of is not None:
            notice = text("status.joined", language)
        return JSONResponse({"service_request_id": str(done.request_id), "token": done.token,
                             "status_url": url, "status": done.status, "matter": done.matter,
                             "department": done.department, "responsible_party": done.party,
                             "responsible": party_text(done.party_message, language),
                             "duplicate_of": str(done.duplicate_of) if done.duplicate_of
                             else None, "notice": notice}, status_code=201)

    @router.get("/report/status/{token}", summary="A reporter's status page (no key)")
    def status_page(engine: EngineDep, token: str,
                    lang: Annotated[str | None, Query(max_length=5)] = None,
                    format: Annotated[str | None, Query(
                        pattern="^(html|json)$", description="html (default) or json.")] = None):
        """The request's status, who acts on it, and the replies, by the reporter's token."""
        language = pick_lang(lang)
        view = status_view(engine, token, language)
        if format == "json":
            return JSONResponse(jsonable_encoder(view))
        return HTMLResponse(status_html(language, view))

    @router.get("/report/photos/{photo_id}", summary="A resident's photo (any key)")
    def report_photo(engine: EngineDep, photo_id: int,
                     caller: Annotated[Caller, require_viewer]) -> FileResponse:
        """The photo's bytes, for staff with a key: residents' photos are never public."""
        with engine.connect() as conn:
            found = store.photo(conn, photo_id)
        if found is None:
            raise NotFound(_("There is no photo {id}.", id=photo_id))
        path = photo_dir() / found["path"]
        if not path.is_file():  # recorded, but not on this node's disk (TWIN_PHOTO_DIR)
            raise Conflict(_("Photo {id} is recorded but its file is missing from {where}.",
                             id=photo_id, where=photo_dir()))
        return FileResponse(path, media_type=found["media_type"],
                            headers={"Cache-Control": "private, max-age=3600"})

    return router, limiter


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def report_html(lang: str, choices: list[dict], extent) -> str:
    """The report page."""
    t = {k: _e(text(k, lang)) for k in (
        "report.title", "report.intro", "report.where", "report.pin", "report.or_building",
        "report.choose", "report.what", "report.placeholder", "report.photo", "report.send",
        "report.sent", "report.follow", "report.other_lang", "report.need_place")}
    other = "en" if lang == "zh" else "zh"
    options = "".join(f'<option value="{_e(c["external_id"])}">{_e(c["name"])}</option>'
                      for c in choices)
    west, south, east, north = extent or (108.5, 32.5, 108.6, 32.6)
    page_texts = json.dumps({"sent": text("report.sent", lang),
                             "follow": text("report.follow", lang),
                             "need_place": text("report.need_place", lang)},
                            ensure_ascii=False)
    return f"""<!doctype html>
<html lang="{'zh-CN' if lang == 'zh' else 'en'}"><head><meta charset="utf-8">
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t['report.title']}</title>
<link rel="stylesheet" href="/static/vendor/leaflet/leaflet.css">
<script src="/static/vendor/leaflet/leaflet.js"></script>
<script src="/static/vendor/leaflet.vectorgrid/Leaflet.VectorGrid.bundled.min.js"></script>
<style>{PAGE_CSS}</style></head><body>
<header><h1>{t['report.title']}</h1><a href="/report?lang={other}">{t['report.other_lang']}</a>
</header><main>
<p class="note">{t['report.intro']}</p>
<form id="report">
<label>{t['report.where']}</label><div id="map"></div>
<p class="note">{t['report.pin']}</p>
<label for="compound">{t['report.or_building']}</label>
<select id="compound" name="compound"><option value="">{t['report.choose']}</option>
{options}</select>
<label for="description">{t['report.what']}</label>
<textarea id="description" name="description" required maxlength="{MAX_DESCRIPTION}"
 placeholder="{t['report.placeholder']}"></textarea>
<label for="photo">{t['report.photo']}</label>
<input id="photo" name="photo" type="file" accept="image/jpeg,image/png,image/webp"
 capture="environment">
<input type="hidden" name="lang" value="{lang}">
<button type="submit">{t['report.send']}</button></form>
<div id="answer"></div></main>
<script>
const T = {page_texts};
const map = L.map('map', {{zoomControl: true}}).fitBounds([[{south}, {west}], [{north}, {east}]]);
const style = {{
  compounds: {{weight: 1, color: '#7a8b99', fill: true, fillColor: '#dfe7ee', fillOpacity: 0.6}},
  streets: {{weight: 2, color: '#5b6770'}}
}};
for (const layer of ['compounds', 'streets']) {{
  L.vectorGrid.protobuf('/tiles/' + layer + '/{{z}}/{{x}}/{{y}}.mvt',
    {{vectorTileLayerStyles: {{[layer]: style[layer]}}, maxNativeZoom: 18}}).addTo(map);
}}
let pin = null;
map.on('click', (e) => {{
  if (pin) pin.setLatLng(e.latlng); else pin = L.marker(e.latlng).addTo(map);
  document.getElementById('compound').value = '';
}});
let device = localStorage.getItem('twin-device');
if (!device) {{ device = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
  localStorage.setItem('twin-device', device); }}
document.getElementById('report').addEventListener('submit', async (ev) => {{
  ev.preventDefault();
  const data = new FormData(ev.target);
  const answer = document.getElementById('answer');
  if (pin) {{ data.set('lat', pin.getLatLng().lat); data.set('long', pin.getLatLng().lng); }}
  else if (!data.get('compound')) {{ answer.className = 'err'; answer.textContent = T.need_place;
    return; }}
  if (!data.get('photo') || !data.get('photo').size) data.delete('photo');
  // ?lang= makes the whole answer, errors included, speak the page's language.
  const r = await fetch('/report?lang={lang}', {{method: 'POST', body: data,
    headers: {{'X-Device-Id': device}}}});
  const body = await r.json();
  if (r.ok) {{
    answer.className = 'done';
    answer.innerHTML = '';
    answer.append(T.sent + ' ', Object.assign(document.createElement('b'),
      {{textContent: body.token}}), document.createElement('br'), body.notice + ' — ' +
      body.responsible, document.createElement('br'));
    answer.append(Object.assign(document.createElement('a'),
      {{href: body.status_url, textContent: T.follow, id: 'status-link'}}));
  }} else {{ answer.className = 'err'; answer.textContent = body.detail; }}
}});
</script></body></html>"""


def status_html(lang: str, view: dict) -> str:
    """The reporter's status page."""
    def tx(key: str) -> str:
        return _e(text(key, lang))
    def change(h: dict) -> str:
        return tx("status." + h["to_value"]) if h["to_value"] in ("open", "closed") else ""
    rows = "".join(
        f"<tr><td>{_e(_when(h['at'], lang))}</td>"
        f"<td>{tx('status.reply') if h['kind'] == 'reply' else tx('status.change')}</td>"
        f"<td>{change(h)} {_e(h['note'])}</td></tr>" for h in view["history"])
    joined = f"<p class='done'>{tx('status.joined')}</p>" if view["duplicate_of"] else ""
    expected = _when(view["expected_at"], lang) if view["expected_at"] else ""
    return f"""<!doctype html>
<html lang="{'zh-CN' if lang == 'zh' else 'en'}"><head><meta charset="utf-8">
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{tx('status.title')}</title><style>{PAGE_CSS}</style></head><body>
<header><h1>{tx('status.title')} #{_e(view['service_request_id'])}</h1></header><main>
<p>{_e(view['description'])}</p>{joined}
<table>
<tr><th>{tx('status.status')}</th><td id="status"><span class="pill">
{tx('status.' + view['status'])}</span> {_e(view['status_notes'])}</td></tr>
<tr><th>{tx('status.matter')}</th><td>{tx('matter.' + view['matter'])}</td></tr>
<tr><th>{tx('status.party')}</th><td>{_e(view['responsible'])}</td></tr>
<tr><th>{tx('status.supporters')}</th><td>{_e(view['supporters'])}</td></tr>
<tr><th>{tx('status.expected')}</th><td>{_e(expected)}</td></tr></table>
<label>{tx('status.history')}</label><table id="history">{rows}</table>
</main></body></html>"""
