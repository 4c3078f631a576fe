"""``twin ingest`` (a file, or ``watch`` a sensor feed), ``twin mapping`` and ``twin metrics``.

Everything that brings a city's data in: a file through ``ingest.pipeline``, an MQTT feed
through ``ingest.watch``, a drafted mapping for a city's columns, and the declarations of
what can be measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from geo.errors import InvalidInput, TwinError
from geo.i18n import _, format_decimal
from service.cli.common import (
    console,
    err_console,
    fail,
    open_engine,
    progress_bar,
    read_database,
)

mapping_app = typer.Typer(
    help="Mapping files: how a city's columns and codes become the twin's fields.",
    no_args_is_help=True,
)
metrics_app = typer.Typer(
    help="Declare what can be measured, before readings of it land.", no_args_is_help=True
)

LAYER_HELP = ("streets, manholes, parking, compounds, buildings, road_damage, debris_piles "
              "(also written road-damage, debris) or readings")


def ingest(
    layer: Annotated[
        str,
        typer.Argument(
            help=LAYER_HELP + "; or `watch` to follow a sensor feed", show_default=False
        ),
    ],
    path: Annotated[
        str,
        typer.Argument(
            help="The file to load (for watch: mqtt://HOST:PORT/TOPIC).", show_default=False
        ),
    ],
    mapping: Annotated[Path | None, typer.Option(help="TOML mapping of columns to fields.")] = None,
    crs: Annotated[
        str | None, typer.Option(help="CRS of a file that has none, e.g. EPSG:4545.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="Name of the source system (default: the mapping's, else the file's name)."
        ),
    ] = None,
    layer_name: Annotated[str | None, typer.Option(help="Layer of a multi-layer file.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Validate and count; keep nothing.")] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="Where to write rejected rows (default: <name>.rejects.csv beside the input)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary only.")] = False,
    allow_new_area: Annotated[
        bool, typer.Option(help="Load a file far from the area already in the twin.")
    ] = False,
    group: Annotated[
        str | None,
        typer.Option(help="watch: join this MQTT shared-subscription group, so that several "
                          "watchers split the feed (each with its own --client-id)."),
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(help="watch: the MQTT client id, whose persistent session keeps what "
                          "arrives while the watcher is away (default: twin-ingest)."),
    ] = None,
) -> None:
    """Load LAYER from PATH: validated, atomic, idempotent; rejected rows are explained.

    Exit codes: 0 loaded (even with rejects), 2 input unusable (nothing written), 1 other error.
    """
    import json

    from ingest.pipeline import check_arguments, ingest_file

    if layer == "watch":
        _watch(path, source=source, as_json=as_json, group=group, client_id=client_id)
        return
    progress = progress_bar(disable=as_json)
    try:
        check_arguments(layer, Path(path), mapping)  # before connecting: a typo is answered now
        engine = open_engine()
        with progress:
            report = ingest_file(
                engine,
                layer,
                Path(path),
                mapping_path=mapping,
                crs=crs,
                source=source,
                layer_name=layer_name,
                dry_run=dry_run,
                rejects_path=rejects,
                progress=progress,
                allow_new_area=allow_new_area,
            )
    except TwinError as error:
        if as_json:
            print(json.dumps({"status": "error", "error": str(error)}))
        raise fail(error) from None
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return
    title = (_("Dry run of {layer} from {path}", layer=layer, path=path) if dry_run
             else _("{layer} from {path}", layer=layer, path=path))
    table = Table(title=title, show_header=False)
    for label, value in (
        (_("source"), report.source),
        (_("read"), report.rows_read),
        (_("new"), report.rows_new),
        (_("updated"), report.rows_updated),
        (_("unchanged"), report.rows_unchanged),
        (_("rejected"), report.rows_rejected),
        (_("repaired"), report.rows_repaired),
        (_("kept, value dropped"), report.rows_with_values_dropped),
        (_("seconds"), f"{report.duration_s:.2f}"),
    ):
        table.add_row(label, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    if report.rejects_path:
        console.print(_("Rejected, repaired and dropped values, with reasons: {path}",
                        path=report.rejects_path))
    if dry_run:
        console.print(_("[yellow]Dry run:[/] nothing was kept."))




@mapping_app.command("draft")
def mapping_draft(
    path: Annotated[Path, typer.Argument(help="The city's file.", show_default=False)],
    layer: Annotated[str, typer.Option(help=LAYER_HELP.removesuffix(" or readings"))],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the mapping (default: print it).")
    ] = None,
    layer_name: Annotated[str | None, typer.Option(help="Layer of a multi-layer file.")] = None,
    crs: Annotated[
        str | None, typer.Option(help="CRS of a file that has none, e.g. EPSG:4545.")
    ] = None,
) -> None:
    """Draft a commented mapping for FILE: id, names, classes with a value map, dates, units.

    Needs no database. Check the draft, then load with `twin ingest LAYER FILE --mapping M`.
    """
    from ingest.draft import draft_mapping

    try:
        draft = draft_mapping(path, layer, layer_name=layer_name, crs=crs)
        if out is not None:
            out.write_text(draft.text, encoding="utf-8")
    except TwinError as error:
        raise fail(error) from None
    except OSError as error:
        raise fail(InvalidInput(_("{out} cannot be written ({why}).", out=out,
                                   why=error.strerror))) from None
    if out is None:
        print(draft.text, end="")
    else:
        preset = {"osm": " (OpenStreetMap)", "tiger": " (TIGER/Line)"}.get(draft.preset or "", "")
        console.print(_("Wrote {out}{preset}; check it, then: twin ingest {layer} {path} "
                        "--mapping {out}", out=out, preset=preset, layer=layer, path=path),
                      highlight=False, soft_wrap=True)


def _watch(url: str, *, source: str | None, as_json: bool, group: str | None,
           client_id: str | None) -> None:
    """Follow an MQTT sensor feed until stopped (Ctrl-C or SIGTERM)."""
    import json
    import logging
    import socket

    from ingest.watch import parse_mqtt_url, shared_topic, watch

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("twin").setLevel(logging.INFO)
    try:
        parse_mqtt_url(url)  # a mistaken URL is said before the database starts
        if group is not None:
            shared_topic(group, "t")
            if client_id is None:
                # Two members under one id would take each other's session in turn.
                raise InvalidInput(_("A watcher in a group needs its own --client-id, "
                                     "e.g. --client-id intake-{host}-1.",
                                     host=socket.gethostname()))
        engine = open_engine()
        err_console.print(_("Following {url}; Ctrl-C stops after the current batch.", url=url))
        stats = watch(engine, url, source=source or "mqtt", group=group,
                      client_id=client_id or "twin-ingest")
    except TwinError as error:
        raise fail(error) from None
    if as_json:
        print(json.dumps(stats.as_dict(), indent=2, default=str))
    else:
        console.print(_("Stopped: {messages} messages, {new} new readings, {unchanged} "
                        "unchanged, {rejected} rejected.",
                        messages=format_decimal(stats.messages),
                        new=format_decimal(stats.readings_new),
                        unchanged=format_decimal(stats.readings_unchanged),
                        rejected=format_decimal(stats.rejected)))
    if stats.broker_dropped:
        err_console.print(_("The broker reported {n} messages dropped while this job ran: "
                            "readings may be missing (see docs/mosquitto.conf).",
                            n=format_decimal(stats.broker_dropped)))


@metrics_app.command("set")
def metrics_set(
    name: Annotated[str | None, typer.Argument(help="Metric name, e.g. pci.")] = None,
    unit: Annotated[str | None, typer.Option(help="Unit, e.g. m/km.")] = None,
    min_value: Annotated[float | None, typer.Option("--min", help="Smallest valid value.")] = None,
    max_value: Annotated[float | None, typer.Option("--max", help="Largest valid value.")] = None,
    higher_is_better: Annotated[
        bool | None, typer.Option("--higher-is-better/--lower-is-better", help="Which way is good.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What it measures.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            help="A TOML file declaring many: [metrics.NAME] unit, min, max, higher_is_better."
        ),
    ] = None,
) -> None:
    """Declare a metric (or many from a TOML file), or change a declaration."""
    from ingest.metrics import MetricDeclaration, declare_metrics, metrics_from_toml

    try:
        if file is not None:
            if name is not None:
                raise TwinError(_("Give either a metric NAME with its options or --file, not "
                                  "both."))
            declarations = metrics_from_toml(file)
        else:
            if name is None:
                raise TwinError(_("Name the metric, or give --file with many."))
            declarations = [
                MetricDeclaration.checked(
                    name=name,
                    unit=unit,
                    min_value=min_value,
                    max_value=max_value,
                    higher_is_better=higher_is_better,
                    description=description,
                    # Where the declaration came from, in its messages (else the file's path).
                    where=_("the command"),
                )
            ]
        engine = open_engine()
        results = declare_metrics(engine, declarations)
    except TwinError as error:
        raise fail(error) from None
    for declaration, is_new in zip(declarations, results, strict=True):
        console.print(
            f"{'Declared' if is_new else 'Updated'} [bold]{declaration.name}[/] "
            f"({declaration.unit}, {declaration.min_value:g} to "
            f"{declaration.max_value:g})."
        )


@metrics_app.command("list")
def metrics_list() -> None:
    """Show the declared metrics."""
    from geo import store

    metrics = read_database(store.metric_ranges)
    table = Table()
    for column in ("metric", "unit", "min", "max", "better", "description"):
        table.add_column(column)
    for name, row in metrics.iterrows():
        better = {True: "higher", False: "lower"}.get(row.higher_is_better, "-")
        table.add_row(
            name,
            row.unit,
            f"{row.min_value:g}",
            f"{row.max_value:g}",
            better,
            row.description or "",
        )
    console.print(table)
