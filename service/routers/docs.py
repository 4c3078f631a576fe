"""The API documentation pages, ``/docs`` (Swagger UI) and ``/redoc``, on vendored assets.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN (and a favicon and fonts from
other hosts), which leaves a blank page for a crew or planner without internet. These serve
the same pages with every file from ``/static/vendor`` (from npm, with their licences:
``scripts/vendor_assets.sh``).
"""

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

VENDOR = "/static/vendor"
# The browser may load nothing but the twin's own files: ReDoc's bundle always draws its
# maker's logo from a public host, which this refuses (the link text stays).
NOTHING_FROM_OUTSIDE = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; font-src 'self' data:",
}


def _document(request: Request) -> dict:
    """What both pages show: the app's OpenAPI document under its title."""
    return {"openapi_url": request.app.openapi_url, "title": f"{request.app.title} - API"}


def _own_files_only(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(NOTHING_FROM_OUTSIDE)
    return page


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI on the twin's OpenAPI document."""
    return _own_files_only(get_swagger_ui_html(
        **_document(request),
        swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
        # No "valid" badge: it would send the document to a public validator.
        swagger_ui_parameters={"validatorUrl": None},
    ))


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc on the twin's OpenAPI document."""
    return _own_files_only(get_redoc_html(
        **_document(request),
        redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    ))
