"""The browser assets of the maps: served by the twin itself, or inlined into one file.

Folium links Leaflet, jQuery, Bootstrap and its plugins from public CDNs. Crews are often
offline, so every map here links only the files vendored in this package, under
``maps/static/vendor`` (fetched from the npm registry by ``scripts/vendor_assets.sh``, with
their licences; the service serves the directory at ``/static``):
:func:`use_local_assets` points every element of a map at them, and raises if an element
asks for a file that is not vendored, so no CDN address can slip into a page.
:func:`inline_assets` then turns a rendered page into one self-contained file.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from pathlib import Path

import folium

# The package's own data, next to this module (listed as package data in pyproject.toml).
STATIC_DIR = Path(__file__).resolve().parent / "static"
VENDOR = "vendor"

# folium's resource name -> file under maps/static/vendor (None: not needed, dropped).
LOCAL: dict[str, str | None] = {
    "leaflet": "leaflet/leaflet.js",
    "leaflet_css": "leaflet/leaflet.css",
    "jquery": None,
    "bootstrap": None,
    "awesome_markers": None,
    "bootstrap_css": None,
    "glyphicons_css": None,
    "awesome_markers_font_css": None,
    "awesome_markers_css": None,
    "awesome_rotate_css": None,
    "markerclusterjs": "leaflet.markercluster/leaflet.markercluster.js",
    "markerclustercss": "leaflet.markercluster/MarkerCluster.css",
    "markerclusterdefaultcss": "leaflet.markercluster/MarkerCluster.Default.css",
    "Control_locate_min_js": "leaflet.locatecontrol/L.Control.Locate.min.js",
    "Control_locate_min_css": "leaflet.locatecontrol/L.Control.Locate.min.css",
    "leaflet-heat.js": "leaflet.heat/leaflet-heat.js",
    "vectorgrid": "leaflet.vectorgrid/Leaflet.VectorGrid.bundled.min.js",
}


class AssetMissing(LookupError):
    """A map element needs a browser file that is not vendored."""


def _localised(links: list[tuple[str, str]], prefix: str) -> list[tuple[str, str]]:
    out = []
    for name, _url in links:
        if name not in LOCAL:
            raise AssetMissing(
                f"The map needs '{name}', which is not vendored; add it to "
                f"scripts/vendor_assets.sh and maps.assets.LOCAL.")
        path = LOCAL[name]
        if path is not None:
            out.append((name, f"{prefix}/{VENDOR}/{path}"))
    return out


def use_local_assets(m: folium.Map, prefix: str = "/static") -> folium.Map:
    """Point the map and every element on it at the vendored files under ``prefix``.

    Parameters
    ----------
    m : folium.Map
        The map, with all its elements added.
    prefix : str
        Where the service serves :data:`STATIC_DIR` (same origin).

    Returns
    -------
    folium.Map
        The same map.
    """
    prefix = prefix.rstrip("/")
    stack: list[folium.Element] = [m]
    while stack:
        element = stack.pop()
        for attribute in ("default_js", "default_css"):
            links = getattr(element, attribute, None)
            if links:
                setattr(element, attribute, _localised(list(links), prefix))
        stack.extend(element._children.values())
    return m


_SCRIPT = re.compile(r'<script src="(?P<url>[^"]+)"></script>')
_CSS = re.compile(r'<link rel="stylesheet" href="(?P<url>[^"]+)"\s*/?>')
_CSS_URL = re.compile(r"url\((?P<q>['\"]?)(?P<ref>[^)'\"]+)(?P=q)\)")


def _vendored(url: str, prefix: str) -> Path:
    if not url.startswith(f"{prefix}/{VENDOR}/"):
        raise AssetMissing(f"The page links {url}, which is not a vendored file.")
    path = (STATIC_DIR / url[len(prefix) + 1:]).resolve()
    if STATIC_DIR not in path.parents or not path.is_file():
        raise AssetMissing(f"The page links {url}, which is not in {STATIC_DIR}.")
    return path


def _data_uri(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _css_inlined(path: Path) -> str:
    def image(match: re.Match) -> str:
        ref = match["ref"]
        if ref.startswith(("data:", "#")):
            return match[0]
        target = (path.parent / ref).resolve()
        if not target.is_file():
            return match[0]
        return f"url({_data_uri(target)})"

    return _CSS_URL.sub(image, path.read_text(encoding="utf-8"))


def inline_assets(html: str, prefix: str = "/static") -> str:
    """Put the vendored scripts and style sheets (and their images) into the page itself.

    The result opens from disk with no server and no network.
    """
    prefix = prefix.rstrip("/")

    def script(match: re.Match) -> str:
        code = _vendored(match["url"], prefix).read_text(encoding="utf-8")
        return "<script>" + code.replace("</script", "<\\/script") + "</script>"

    def css(match: re.Match) -> str:
        code = _css_inlined(_vendored(match["url"], prefix))
        return "<style>" + code.replace("</style", "<\\/style") + "</style>"

    return _CSS.sub(css, _SCRIPT.sub(script, html))
