"""The backtest report: error by horizon, interval calibration and a map of errors, as HTML or PNG.

Plots are drawn with matplotlib (its Agg backend: no display, nothing fetched) and embedded in
one self-contained HTML file, or written as one PNG with the three panels.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from geo.errors import InvalidInput
from geo.i18n import _, _l, html_lang
from predict.features import RoadContext

# The report's words, in one place for the i18n catalogue.
TABLE_HEAD = (_l("days ahead"), _l("rows"), _l("origins"), _l("MAE model"),
              _l("MAE persistence"), _l("MAE trend"), _l("model / persistence"),
              _l("coverage"), _l("crossings P / R model"), _l("crossings P / R trend"),
              _l("crossings R, interval's earliest / latest date"))
TEXT = {
    "title": _l("Road-wear backtest of '{metric}'"),
    "error": _l("Mean absolute error by horizon"),
    "calibration": _l("80 % interval: share of outcomes inside, by horizon"),
    "map": _l("Where the model beats persistence ({horizon} days ahead)"),
    "days": _l("days ahead"), "mae": _l("MAE ({metric})"), "coverage": _l("coverage"),
    "model": _l("model"), "persistence": _l("persistence"), "trend": _l("linear trend"),
    "nominal": _l("nominal 80 %"), "map_colour": _l("|model error| - |persistence error|"),
    "origins": _l("Origins: {origins}."),
}


# Fonts with Chinese glyphs, in the order tried (Debian's fonts-noto-cjk first): matplotlib's
# default DejaVu Sans draws Chinese labels as empty boxes.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "Droid Sans Fallback")


def _font_family() -> list[str]:
    """The sans-serif fonts to draw with: a CJK font first when one is installed."""
    from matplotlib import font_manager

    for name in CJK_FONTS:
        try:
            font_manager.findfont(font_manager.FontProperties(family=name),
                                  fallback_to_default=False)
        except ValueError:
            continue
        return [name, "DejaVu Sans"]
    return ["DejaVu Sans"]


def _figure(report: dict, rows: pd.DataFrame, ctx: RoadContext):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    with matplotlib.rc_context({"font.family": "sans-serif",
                                "font.sans-serif": _font_family()}):
        return _draw(plt, report, rows, ctx)


def _draw(plt, report: dict, rows: pd.DataFrame, ctx: RoadContext):
    metric = report["metric"]
    horizons = sorted(int(h) for h in report["horizons"])
    entries = [report["horizons"][h] for h in horizons]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    for key, style in (("model", "o-"), ("persistence", "s--"), ("trend", "^:")):
        ax.plot(horizons, [e["mae"][key] for e in entries], style, label=str(TEXT[key]))
    ax.set(title=str(TEXT["error"]), xlabel=str(TEXT["days"]),
           ylabel=str(TEXT["mae"]).format(metric=metric))
    ax.set_ylim(bottom=0)
    ax.legend()
    ax = axes[1]
    ax.bar([str(h) for h in horizons], [e["coverage"] for e in entries], color="#4c78a8")
    ax.axhspan(0.75, 0.85, color="#72b7b2", alpha=0.3)
    ax.axhline(0.8, color="black", lw=1, label=str(TEXT["nominal"]))
    ax.set(title=str(TEXT["calibration"]), xlabel=str(TEXT["days"]),
           ylabel=str(TEXT["coverage"]), ylim=(0, 1))
    ax.legend(loc="lower right")
    ax = axes[2]
    longest = horizons[-1]
    part = rows[rows["horizon_days"] == longest]
    gain = (part.assign(g=(part["model"] - part["truth"]).abs()
                        - (part["persistence"] - part["truth"]).abs())
            .groupby("asset_id")["g"].mean() * (ctx.scale.max_value - ctx.scale.min_value))
    where = ctx.streets.reindex(gain.index)
    limit = float(np.nanmax(np.abs(gain.to_numpy()))) if len(gain) else 1.0
    points = ax.scatter(where["lon"], where["lat"], c=gain.to_numpy(), cmap="RdBu_r", s=12,
                        vmin=-limit, vmax=limit)
    fig.colorbar(points, ax=ax, label=str(TEXT["map_colour"]))
    ax.set(title=str(TEXT["map"]).format(horizon=longest), xlabel="lon", ylabel="lat")
    ax.set_aspect(1 / np.cos(np.radians(float(np.nanmean(where["lat"])) if len(where) else 0)))
    fig.tight_layout()
    return fig


def _table(report: dict) -> str:
    head = "".join(f"<th>{html.escape(str(t))}</th>" for t in TABLE_HEAD)
    body = []
    for h, e in sorted(report["horizons"].items(), key=lambda kv: int(kv[0])):
        c = e["crossings"]
        cells = [h, e["rows"], e["origins"], e["mae"]["model"], e["mae"]["persistence"],
                 e["mae"]["trend"], e["model_vs_persistence"], e["coverage"],
                 f"{c['model']['precision']} / {c['model']['recall']}",
                 f"{c['linear_trend']['precision']} / {c['linear_trend']['recall']}",
                 f"{c['model_earliest']['recall']} / {c['model_latest']['recall']}"]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells)
                    + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_report(report: dict, rows: pd.DataFrame, ctx: RoadContext, path: Path) -> Path:
    """Write the report to ``path``: ``.html`` (plots and table) or ``.png`` (the plots)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".png"):
        raise InvalidInput(_("Report {path} must end in .html or .png.", path=path))
    if rows.empty:
        raise InvalidInput(_("The backtest scored no observations, so there is nothing to "
                             "plot."))
    from matplotlib import pyplot as plt

    fig = _figure(report, rows, ctx)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    if suffix == ".png":
        path.write_bytes(buffer.getvalue())
        return path
    origins = ", ".join(o["origin"] for o in report["origins"])
    title = str(TEXT["title"]).format(metric=report["metric"])
    image = base64.b64encode(buffer.getvalue()).decode()
    path.write_text(
        f"<!doctype html><html lang='{html_lang()}'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(str(TEXT['origins']).format(origins=origins))} "
        f"{html.escape(report['scoring'])}</p>"
        f"{_table(report)}<p><img alt='{html.escape(str(TEXT['error']))}' "
        f"src='data:image/png;base64,{image}' style='max-width:100%'></p></body></html>",
        encoding="utf-8")
    return path
