"""``twin map`` (a map as one HTML file that works from disk) and ``twin demo`` (the product)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from geo.errors import InvalidInput, TwinError
from geo.i18n import _, default_locale, format_date, format_decimal, set_locale
from service.cli.common import console, fail, open_engine

KINDS = ("crew", "planner", "3d")


def map_command(
    kind: Annotated[str, typer.Option("--kind", help="crew, planner or 3d.")],
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
    horizon: Annotated[list[int] | None, typer.Option(
        "--horizon", help="Planner: forecast horizons in days to offer (repeat; default "
                          "30, 90, 365).")] = None,
) -> None:
    """Write a map as one self-contained HTML file: scripts and data inside, no server needed.

    The data is the twin's now: alerts for crews; condition, forecasts, damage, debris,
    manholes and compounds for planners; houses, streets, manholes and alerts in 3D.
    Buttons that act on alerts need the service.
    """
    from service.map_pages import DEFAULT_HORIZONS, render_3d, render_crew, render_planner

    try:
        if kind not in KINDS:
            raise InvalidInput(_("Kind '{kind}' is not one of {kinds}.", kind=kind,
                                 kinds=", ".join(KINDS)))
        if out.is_dir():
            raise InvalidInput(_("{out} is a directory; give a file name such as map.html.",
                                 out=out))
        engine = open_engine()
        with console.status(_("Drawing the {kind} map", kind=kind)):
            html = (render_crew(engine, inline=True) if kind == "crew" else
                    render_3d(engine, inline=True) if kind == "3d" else
                    render_planner(engine, tuple(horizon or DEFAULT_HORIZONS), inline=True))
    except TwinError as error:
        raise fail(error) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    console.print(_("Wrote the {kind} map to {out} ({mb} MB); open it in a browser, no network "
                    "needed.", kind=kind, out=out,
                    mb=format_decimal(len(html.encode()) / 1e6, "0.0")))


def _prepare(engine) -> None:
    """Load the sample, train, score and refresh alerts: each only when it is not done."""
    from geo import predictions, store
    from ingest.sample import load_sample
    from predict.alerts import refresh
    from predict.pipeline import score, train
    from predict.road import DEFAULT_HORIZONS, as_utc
    from sample_data import SAMPLE_DIR

    with engine.connect() as conn:
        loaded = store.twin_area(conn) is not None
    if loaded:
        console.print(_("Data: already loaded (`twin sample load` loads the sample again)."))
    else:
        with console.status(_("Loading the sample neighbourhood through the ingest")):
            reports = load_sample(engine, SAMPLE_DIR)
        console.print(_("Data: loaded the sample ({rows} rows).",
                        rows=format_decimal(sum(r.rows_new for r in reports))))

    with engine.connect() as conn:
        metric = predictions.metric_by_name(conn, "pci")
        last = predictions.observation_span(conn, metric["id"])[1] if metric else None
        model = predictions.latest_model(conn, "road_wear", "pci")
    if last is None:
        console.print(_("[yellow]No PCI readings:[/] no forecast or road-wear alert to make."))
        return
    if model is not None and as_utc(model["train_to"]) >= as_utc(last):
        version = model["version"]
        console.print(_("Model: {version} already covers the data up to {day}.",
                        version=version, day=format_date(as_utc(last).date())))
    else:
        with console.status(_("Training the road-wear model (about half a minute)")):
            version = train(engine, "pci", None).version
        console.print(_("Model: trained {version}.", version=version))
    assert metric is not None  # there are PCI readings, so the metric is declared
    with engine.connect() as conn:
        scored = predictions.latest_street_predictions(conn, metric["id"], DEFAULT_HORIZONS[0])
    if len(scored) and (scored["model_version"] == version).any():
        console.print(_("Forecasts: already made with this model."))
    else:
        with console.status(_("Forecasting every street")):
            result = score(engine, "pci", DEFAULT_HORIZONS, None, version=version)
        console.print(_("Forecasts: {rows} for {streets} streets.",
                        rows=format_decimal(result.rows), streets=format_decimal(result.streets)))
    report = refresh(engine)
    # What a crew faces now: every open alert, whether this refresh raised it or kept it.
    open_now = {kind: report.opened.get(kind, 0) + report.kept.get(kind, 0)
                for kind in sorted(set(report.opened) | set(report.kept))}
    from maps.crew import KIND_LABELS

    by_kind = _(", ").join(f"{n} {str(KIND_LABELS.get(kind, kind.replace('_', ' '))).lower()}"
                           for kind, n in open_now.items() if n)
    console.print(_("Alerts: {open} open ({kinds}); {raised} raised by this refresh, {closed} "
                    "closed by it.", open=sum(open_now.values()), kinds=by_kind or _("none"),
                    raised=sum(report.opened.values()),
                    closed=sum(report.resolved.values())))


def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    prepare_only: Annotated[bool, typer.Option(
        "--prepare-only", help="Do everything but serve.")] = False,
) -> None:
    """The whole twin on this machine: database, sample, forecasts, alerts, maps, API.

    Run again, it reuses what is there and starts in seconds.
    """
    import uvicorn

    from service.app import create_app
    from service.settings import ServiceSettings

    # The demo is the sample's deployment, a Chinese county's: it speaks Chinese unless
    # TWIN_LANGUAGE says otherwise (pages still follow ?lang= and Accept-Language).
    os.environ.setdefault("TWIN_LANGUAGE", "zh")
    os.environ.setdefault("TWIN_TIMEZONE", "Asia/Shanghai")  # and its residents' clock
    set_locale(default_locale())

    try:
        engine = open_engine()
        _prepare(engine)
    except TwinError as error:
        raise fail(error) from None
    if prepare_only:
        return
    # With its job worker: new readings raise alerts and the schedule runs, nothing by hand.
    app = create_app(engine, ServiceSettings(run_worker=True))
    base = f"http://{host}:{port}"
    pages = ((_("crew map"), "/map"), (_("planner map"), "/map/planner"),
             (_("3D view"), "/map/3d"), (_("API docs"), "/docs"), (_("OGC API"), "/ogc"))
    console.print(
        "\n" + _("[bold]Neighbourhood Twin is ready[/] (Ctrl-C stops it):") + "\n"
        + "".join(f"  {name:<16}{base}{path}\n" for name, path in pages), highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")
