"""``twin map`` (a map as one HTML file that works from disk) and ``twin demo`` (the product)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from geo.errors import InvalidInput, TwinError
from geo.i18n import default_locale, set_locale
from service.cli import _engine, _fail, _settings, console

KINDS = ("crew", "planner")


def map_command(
    kind: Annotated[str, typer.Option("--kind", help="crew or planner.")],
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
    horizon: Annotated[list[int] | None, typer.Option(
        "--horizon", help="Planner: forecast horizons in days to offer (repeat; default "
                          "30, 90, 365).")] = None,
) -> None:
    """Write a map as one self-contained HTML file: scripts and data inside, no server needed.

    The data is the twin's now: alerts for crews; condition, forecasts, damage, debris,
    manholes and compounds for planners. Buttons that act on alerts need the service.
    """
    from service.routers.maps import DEFAULT_HORIZONS, render_crew, render_planner

    try:
        if kind not in KINDS:
            raise InvalidInput(f"Kind '{kind}' is not one of {', '.join(KINDS)}.")
        if out.is_dir():
            raise InvalidInput(f"{out} is a directory; give a file name such as map.html.")
        engine = _engine(_settings())
        with console.status(f"Drawing the {kind} map"):
            html = (render_crew(engine, inline=True) if kind == "crew" else
                    render_planner(engine, tuple(horizon or DEFAULT_HORIZONS), inline=True))
    except TwinError as error:
        raise _fail(error) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    console.print(f"Wrote the {kind} map to {out} ({len(html.encode()) / 1e6:.1f} MB); "
                  f"open it in a browser, no network needed.")


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
        console.print("Data: already loaded (`twin sample load` loads the sample again).")
    else:
        with console.status("Loading the sample neighbourhood through the ingest"):
            reports = load_sample(engine, SAMPLE_DIR)
        console.print(f"Data: loaded the sample ({sum(r.rows_new for r in reports):,} rows).")

    with engine.connect() as conn:
        metric = predictions.metric_by_name(conn, "pci")
        last = predictions.observation_span(conn, metric["id"])[1] if metric else None
        model = predictions.latest_model(conn, "road_wear", "pci")
    if last is None:
        console.print("[yellow]No PCI readings:[/] no forecast or road-wear alert to make.")
        return
    if model is not None and as_utc(model["train_to"]) >= as_utc(last):
        version = model["version"]
        console.print(f"Model: {version} already covers the data up to {as_utc(last).date()}.")
    else:
        with console.status("Training the road-wear model (about half a minute)"):
            version = train(engine, "pci", None).version
        console.print(f"Model: trained {version}.")
    assert metric is not None  # there are PCI readings, so the metric is declared
    with engine.connect() as conn:
        scored = predictions.latest_street_predictions(conn, metric["id"], DEFAULT_HORIZONS[0])
    if len(scored) and (scored["model_version"] == version).any():
        console.print("Forecasts: already made with this model.")
    else:
        with console.status("Forecasting every street"):
            result = score(engine, "pci", DEFAULT_HORIZONS, None, version=version)
        console.print(f"Forecasts: {result.rows:,} for {result.streets:,} streets.")
    report = refresh(engine)
    # What a crew faces now: every open alert, whether this refresh raised it or kept it.
    open_now = {kind: report.opened.get(kind, 0) + report.kept.get(kind, 0)
                for kind in sorted(set(report.opened) | set(report.kept))}
    by_kind = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in open_now.items() if n)
    console.print(f"Alerts: {sum(open_now.values())} open ({by_kind or 'none'}); "
                  f"{sum(report.opened.values())} raised by this refresh, "
                  f"{sum(report.resolved.values())} closed by it.")


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
    set_locale(default_locale())

    try:
        engine = _engine(_settings())
        _prepare(engine)
    except TwinError as error:
        raise _fail(error) from None
    if prepare_only:
        return
    # With its job worker: new readings raise alerts and the schedule runs, nothing by hand.
    app = create_app(engine, ServiceSettings(run_worker=True))
    base = f"http://{host}:{port}"
    console.print(
        f"\n[bold]Neighbourhood Twin is ready[/] (Ctrl-C stops it):\n"
        f"  crew map        {base}/map\n"
        f"  planner map     {base}/map/planner\n"
        f"  API docs        {base}/docs\n"
        f"  OGC API         {base}/ogc\n", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")
