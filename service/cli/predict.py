"""``twin predict`` (train, score, evaluate, load evidence) and ``twin alerts refresh``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from geo.errors import InvalidInput, TwinError
from geo.i18n import _, format_decimal
from service.cli.common import console, fail, open_engine

predict_app = typer.Typer(
    help="Forecast road wear and debris, check manhole sensors, and score the forecasts.",
    no_args_is_help=True)
alerts_app = typer.Typer(help="Turn forecasts and sensor rules into alerts for crews.",
                         no_args_is_help=True)

MetricOption = Annotated[str, typer.Option(
    "--metric", help="A declared street condition metric (pci, iri_m_per_km, ...).")]
AsOfOption = Annotated[str | None, typer.Option(
    "--as-of", help="Use only what was observed by this date (YYYY-MM-DD, UTC); "
                    "default: the newest observation.")]


@predict_app.command("train")
def train(metric: MetricOption = "pci", as_of: AsOfOption = None,
          random_state: Annotated[int, typer.Option(help="Seed.")] = 0) -> None:
    """Train a road-wear model and store it, versioned, in the model registry."""
    from predict.pipeline import train as train_model

    try:
        result = train_model(open_engine(), metric, as_of, random_state=random_state)
    except TwinError as error:
        raise fail(error) from None
    console.print(_("Stored model [bold]{version}[/]: '{metric}' from {start} to {end}, "
                    "{rows} examples.", version=result.version, metric=result.metric,
                    start=result.train_from, end=result.train_to,
                    rows=format_decimal(result.rows)))


@predict_app.command("score")
def score(
    metric: MetricOption = "pci",
    horizon: Annotated[list[int] | None, typer.Option(
        "--horizon", help="Days ahead; repeat for several (default 30, 90, 365).")] = None,
    as_of: AsOfOption = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Also write external_id, metric, target_date, value, lower, upper, "
                      "days_to_threshold, crossing_earliest_days, crossing_latest_days, "
                      "explanation "
                      "to this CSV.")] = None,
    version: Annotated[str | None, typer.Option(
        help="Model version (default: the newest for the metric).")] = None,
    target: Annotated[str, typer.Option(
        help="road-wear (streets, with the stored model) or debris (each pile's expected "
             "volume; default horizons 7 and 30).")] = "road-wear",
    queue: Annotated[bool, typer.Option(
        "--queue", help="Road wear: plan the run and queue one job per district (or per "
                        "--part-streets streets) for the job workers to share, instead of "
                        "scoring here; the run becomes current when its last part ends.")
    ] = False,
    part_streets: Annotated[int | None, typer.Option(
        min=1, help="With --queue: the most streets one job scores (default "
                    "TWIN_SCORE_PART_STREETS, 2000).")] = None,
) -> None:
    """Forecast every street (or debris pile) into the predictions table."""
    from predict.pipeline import score as score_streets
    from predict.pipeline import score_debris
    from predict.road import DEFAULT_HORIZONS

    try:
        if queue and (out is not None or target != "road-wear"):
            raise InvalidInput(_("--queue queues road-wear scoring only and writes no CSV: "
                              "leave out --out and --target."))
        if queue:
            from geo.settings import LoopSettings
            from predict.batch import plan

            run = plan(open_engine(), metric, horizon or DEFAULT_HORIZONS, as_of,
                       version=version, enqueue=True,
                       part_streets=part_streets or LoopSettings().score_part_streets)
            console.print(_("Run {run}: {parts} jobs queued for {streets} streets as of {as_of} "
                            "with model {version}; `twin worker` processes score them.",
                            run=run.run_id, parts=format_decimal(run.parts),
                            streets=format_decimal(run.streets), as_of=run.as_of,
                            version=run.model_version))
            return
        if target == "debris":
            result = score_debris(open_engine(), horizon or (7, 30), as_of, out=out)
            console.print(f"Run {result.run_id}: {result.rows:,} forecasts for "
                          f"{result.streets:,} debris piles present as of {result.as_of} "
                          f"with model {result.model_version}."
                          + (f" CSV: {result.csv}" if result.csv else ""))
            return
        if target != "road-wear":
            raise TwinError(_("Target '{target}' is not one of road-wear, debris.",
                              target=target))
        result = score_streets(open_engine(), metric, horizon or DEFAULT_HORIZONS, as_of,
                               out=out, version=version)
    except TwinError as error:
        raise fail(error) from None
    console.print(f"Run {result.run_id}: {result.rows:,} forecasts for {result.streets:,} "
                  f"streets as of {result.as_of} with model {result.model_version}."
                  + (f" CSV: {result.csv}" if result.csv else ""))


@predict_app.command("evaluate")
def evaluate(
    target: Annotated[str, typer.Option(help="road-wear, debris or manholes.")],
    as_of: AsOfOption = None,
    horizon: Annotated[list[int] | None, typer.Option(
        "--horizon", help="Days ahead (manholes: days looked back); repeat for several.")
    ] = None,
    metric: MetricOption = "pci",
    truth: Annotated[Path | None, typer.Option(
        help="Ground-truth directory for manholes (default: the committed sample's).")] = None,
    window: Annotated[int, typer.Option(
        help="Road wear: days around as-of + horizon whose observations are scored.")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    origins: Annotated[int, typer.Option(
        help="Road wear: a rolling-origin backtest over this many as-of dates, --step days "
             "apart, ending at --as-of (default: the newest that leaves --horizon "
             "scorable).")] = 1,
    step: Annotated[int, typer.Option(help="Road wear: days between backtest origins.")] = 365,
    threshold: Annotated[float | None, typer.Option(
        help="Road wear backtest: the condition threshold whose crossings are scored "
             "(default: PCI 55, else the middle of the range).")] = None,
    report_file: Annotated[Path | None, typer.Option(
        "--report", help="Road wear: write the backtest's plots (error by horizon, interval "
                         "calibration, map of errors) to this .html or .png file.")] = None,
) -> None:
    """Train on what was known at --as-of, forecast, and score against what happened next."""
    from predict.evaluate import backtest
    from predict.evaluate import evaluate as run

    try:
        if target == "road-wear" and (origins > 1 or report_file is not None):
            report = backtest(open_engine(), metric, horizon or [90], as_of=as_of,
                              origins=origins, step_days=step, window_days=window,
                              threshold=threshold, report=report_file)
            if not as_json:
                _print_backtest(report)
                return
        else:
            report = run(open_engine(), target, as_of, horizon or [90], metric=metric,
                         truth_dir=truth, window_days=window)
    except TwinError as error:
        if as_json:
            print(json.dumps({"status": "error", "error": str(error)}))
        raise fail(error) from None
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    _print_report(report)


def _print_backtest(report: dict) -> None:
    console.print(f"Road wear of '{report['metric']}', rolling-origin backtest over "
                  f"{len(report['origins'])} origins "
                  f"({', '.join(o['origin'] for o in report['origins'])}); "
                  f"{report['scoring']}.", highlight=False, soft_wrap=True)
    for horizon, h in sorted(report["horizons"].items(), key=lambda kv: int(kv[0])):
        cross = h["crossings"]
        console.print(
            f"  {horizon} days: {h['rows']} outcomes; MAE model {h['mae']['model']}, "
            f"persistence {h['mae']['persistence']}, linear trend {h['mae']['trend']} "
            f"(model/persistence {h['model_vs_persistence']}, model/trend "
            f"{h['model_vs_trend']}); {report['interval']} interval coverage "
            f"{h['coverage']}; crossing {report['threshold']:g}: model precision "
            f"{cross['model']['precision']} recall {cross['model']['recall']}, linear trend "
            f"{cross['linear_trend']['precision']} / {cross['linear_trend']['recall']}, "
            f"interval's earliest / latest date recall {cross['model_earliest']['recall']} / "
            f"{cross['model_latest']['recall']} "
            f"({cross['model']['actual']} crossed)", highlight=False, soft_wrap=True)
    if report.get("report"):
        console.print(f"Report: {report['report']}")


def _print_report(report: dict) -> None:
    if report["target"] == "road-wear":
        if report.get("as_of_chosen"):
            console.print(report["as_of_chosen"][0].upper() + report["as_of_chosen"][1:] + ".")
        console.print(f"Road wear of '{report['metric']}' as of {report['as_of']}; "
                      f"{report['scoring']}.")
        for h in report["horizons"]:
            line = (f"  {h['horizon_days']} days (observations {h['window'][0]} to "
                    f"{h['window'][1]}): {h['segments_scored']} streets scored")
            if h["segments_scored"]:
                cross = h["threshold_crossing"]["model"]
                line += (
                    f"\n    MAE/RMSE model {h['model']['mae']}/{h['model']['rmse']}, "
                    f"persistence {h['persistence']['mae']}/{h['persistence']['rmse']}, "
                    f"linear trend {h['linear_trend']['mae']}/{h['linear_trend']['rmse']} "
                    f"(model/persistence MAE {h['model_mae_vs_persistence']})"
                    f"\n    {report['interval']} interval coverage {h['interval_coverage']}; "
                    f"crossing {report['threshold']:g}: precision {cross['precision']}, "
                    f"recall {cross['recall']} ({cross['actual']} crossed, "
                    f"{cross['predicted']} predicted)")
            console.print(line, highlight=False, soft_wrap=True)
        return
    console.print_json(json.dumps(report, default=str))


@predict_app.command("load-surveys")
def load_surveys(
    path: Annotated[Path, typer.Argument(help="A wide survey CSV: one row per street block, "
                                              "one column per year and metric.")],
    mapping: Annotated[Path, typer.Option(help="TOML mapping (see ingest/wide_survey.py and "
                                               "docs/forecasts.md).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only.")] = False,
) -> None:
    """Load a city's yearly survey table into readings, through the readings ingest."""
    from ingest.wide_survey import load_wide_survey

    try:
        report = load_wide_survey(open_engine(), path, mapping, dry_run=dry_run)
    except TwinError as error:
        raise fail(error) from None
    console.print(_("{read} survey values read: {new} new, {updated} updated, {rejected} "
                    "rejected.", read=format_decimal(report.rows_read),
                    new=format_decimal(report.rows_new),
                    updated=format_decimal(report.rows_updated),
                    rejected=format_decimal(report.rows_rejected)))
    if report.rows_rejected:
        console.print(_("Rejected rows: {path}", path=report.rejects_path))


@predict_app.command("load-programme")
def load_programme(
    path: Annotated[Path, typer.Argument(help="CSV: external_id, year, treatment "
                                              "[, planned_on, published_on].")],
    source: Annotated[str | None, typer.Option(help="Programme's name (default: the file's "
                                                    "name); its older entries are replaced.")]
    = None,
) -> None:
    """Load a paving programme: streets scheduled for treatment, evidence for forecasts."""
    from ingest.programme import load_programme as run

    try:
        count = run(open_engine(), path, source=source)
    except TwinError as error:
        raise fail(error) from None
    console.print(_("Programme loaded: {count} scheduled treatments.",
                    count=format_decimal(count)))


@predict_app.command("load-work")
def load_work(
    path: Annotated[Path, typer.Argument(help="CSV: external_id, action, done_at.")],
    source: Annotated[str | None, typer.Option(help="Who kept the records.")] = None,
) -> None:
    """Load a city's past work records of streets (resurfacing resets the wear curve)."""
    from ingest.programme import load_work_records

    try:
        count = load_work_records(open_engine(), path, source=source)
    except TwinError as error:
        raise fail(error) from None
    console.print(_("Work records loaded: {count}.", count=format_decimal(count)))


@alerts_app.command("refresh")
def refresh(
    metric: MetricOption = "pci",
    horizon: Annotated[int, typer.Option(
        help="Alert on streets forecast to cross the threshold within these days.")] = 90,
    threshold: Annotated[float | None, typer.Option(
        help="Condition threshold (default: PCI 55, else the middle of the range).")] = None,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Sensor time to check (default: the newest sensor report).")] = None,
) -> None:
    """Raise, update and auto-resolve road-wear and manhole alerts."""
    from predict.alerts import refresh as run

    try:
        report = run(open_engine(), metric=metric, horizon_days=horizon,
                     threshold=threshold, until=as_of)
    except TwinError as error:
        raise fail(error) from None
    table = Table(title=_("Alerts refreshed"))
    for column in (_("kind"), _("opened"), _("still open"), _("resolved")):
        table.add_column(column)
    kinds = sorted(set(report.opened) | set(report.kept) | set(report.resolved))
    for kind in kinds:
        table.add_row(kind, str(report.opened.get(kind, 0)), str(report.kept.get(kind, 0)),
                      str(report.resolved.get(kind, 0)))
    console.print(table)
    for note in report.notes:
        console.print(_("[yellow]Note:[/] {note}", note=note))
