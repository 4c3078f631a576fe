"""The councils' living list (三事清单): ``/council`` (page), ``/council.json``, ``/council.csv``.

Filters: ``compound`` (external id), ``matter`` and ``status`` (comma lists). Reading follows
the service's read rule (open unless ``TWIN_OPEN_READ=false``); descriptions are masked.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response

from civic import council
from civic.catalogue import MATTERS
from civic.texts import pick_lang, text
from geo.text_rules import check_text
from service.deps import EngineDep, ReaderDep
from service.page_style import PAGE_CSS
from service.params import parse_choices
from service.privacy import mask_personal

router = APIRouter(tags=["residents"])

CompoundQ = Annotated[str | None, Query(max_length=100, description="A compound's external id.")]
MatterQ = Annotated[list[str] | None, Query(description="big, small, private (comma lists).")]
StatusQ = Annotated[list[str] | None, Query(description="open, closed (comma lists).")]


def _lines(engine, compound, matter, status, lang=None):
    if compound is not None:
        compound = check_text(compound, "compound", max_chars=100)
    matters = list(parse_choices(matter, "matter", MATTERS)) or None
    statuses = list(parse_choices(status, "status", council.STATUSES)) or None
    with engine.connect() as conn:
        return council.living_list(conn, compound=compound, matters=matters,
                                   statuses=statuses, lang=lang)


@router.get("/council.json", summary="The living list as JSON")
def council_json(engine: EngineDep, reader: ReaderDep, compound: CompoundQ = None,
                 matter: MatterQ = None, status: StatusQ = None) -> JSONResponse:
    """Lines by compound, party, matter and status: counts, supporters, age, overdue."""
    lines, _ = _lines(engine, compound, matter, status)
    return JSONResponse(jsonable_encoder(council.as_json(lines)))


@router.get("/council.csv", summary="The living list as CSV")
def council_csv(engine: EngineDep, reader: ReaderDep, compound: CompoundQ = None,
                matter: MatterQ = None, status: StatusQ = None) -> Response:
    """The same lines as CSV."""
    lines, _ = _lines(engine, compound, matter, status)
    return Response(council.as_csv(lines), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="council.csv"'})


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


@router.get("/council", response_class=HTMLResponse,
            summary="The living list for a council meeting (Chinese; ?lang=en)")
def council_page(engine: EngineDep, reader: ReaderDep, compound: CompoundQ = None,
                 matter: MatterQ = None, status: StatusQ = None,
                 lang: Annotated[str | None, Query(max_length=5)] = None) -> HTMLResponse:
    """A page to meet over: the lines, then each request behind them."""
    language = pick_lang(lang)

    def tx(key: str) -> str:
        return _e(text(key, language))
    lines, items = _lines(engine, compound, matter, status, language)
    head = "".join(f"<th>{tx('council.' + k)}</th>" for k in (
        "compound", "party", "matter", "status", "count", "supporters", "oldest", "overdue"))
    body = "".join(
        f"<tr><td>{_e(ln.compound_name) or tx('council.none')}</td>"
        f"<td>{_e(ln.responsible)}</td><td>{tx('matter.' + ln.matter)}</td>"
        f"<td>{tx('status.' + ln.status)}</td><td>{ln.requests}</td><td>{ln.supporters}</td>"
        f"<td>{ln.oldest_days:.1f}</td>"
        f"<td{' style=color:#b3261e;font-weight:700' if ln.overdue else ''}>{ln.overdue}</td>"
        f"</tr>" for ln in lines)
    detail = "".join(
        f"<tr><td>#{i['id']}</td><td>{_e(i['compound_name']) or tx('council.none')}</td>"
        f"<td>{_e(mask_personal(i['description']) or i['service_name'])}</td>"
        f"<td>{tx('status.' + i['status'])}{' ⚠' if i['overdue'] else ''}</td>"
        f"<td>{i['supporters']}</td></tr>" for i in items[:500])
    other = "en" if language == "zh" else "zh"
    empty = f"<p>{tx('council.empty')}</p>" if not lines else ""
    return HTMLResponse(f"""<!doctype html>
<html lang="{'zh-CN' if language == 'zh' else 'en'}"><head><meta charset="utf-8">
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{tx('council.title')}</title><style>{PAGE_CSS} main{{max-width:1100px}}</style></head>
<body><header><h1>{tx('council.title')}</h1>
<a href="/council?lang={other}">{_e(text('report.other_lang', language))}</a></header><main>
<p class="note">{tx('council.intro')}</p>{empty}
<table id="lines"><tr>{head}</tr>{body}</table>
<label>{tx('council.items')}</label><table id="items">{detail}</table>
<p class="note"><a href="/council.csv">CSV</a> · <a href="/council.json">JSON</a></p>
</main></body></html>""")
