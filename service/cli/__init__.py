"""The ``twin`` command: the single entry point to the neighbourhood twin."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from geo.errors import InvalidInput, TwinError
from geo.i18n import _, default_locale, format_decimal, set_locale
from geo.settings import DatabaseSettings

app = typer.Typer(
    help="Neighbourhood Twin: streets, manholes, parking and compounds on PostGIS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="Manage the twin's database (the embedded cluster by default).", no_args_is_help=True
)
sample_app = typer.Typer(help="Generate and load synthetic neighbourhoods.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sample_app, name="sample")

def _console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    # Piped or captured output goes to programs, logs and CI: never wrap it at 80 columns,
    # which splits words and paths.
    return Console(stderr=stderr, soft_wrap=True, width=1000)


console = _console()
err_console = _console(stderr=True)

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="TWIN_DATABASE_URL",
        help="PostGIS database URL; without it twin runs its embedded database under TWIN_HOME.",
        show_envvar=True,
    ),
]


class _State:
    database_url: str | None = None


state = _State()


@app.callback()
def main(database_url: DatabaseUrlOption = None) -> None:
    """Neighbourhood Twin: streets, manholes, parking and compounds on PostGIS."""
    state.database_url = database_url
    # The run speaks the deployment's language (TWIN_LANGUAGE).
    set_locale(default_locale())


def _settings() -> DatabaseSettings:
    settings = DatabaseSettings()
    if state.database_url:
        settings = settings.model_copy(update={"database_url": state.database_url})
    return settings


def _fail(error: TwinError) -> typer.Exit:
    label = _("Error:")
    err_console.print(f"[bold red]{label}[/] {error}", highlight=False, soft_wrap=True)
    return typer.Exit(error.exit_code)


def _embedded_only(settings: DatabaseSettings, command: str) -> None:
    if settings.database_url:
        raise TwinError(_(
            "`twin db {command}` manages the embedded database, but TWIN_DATABASE_URL "
            "points twin at an external one; unset it to manage the embedded database.",
            command=command))


def _cluster(settings: DatabaseSettings):
    from geo.cluster import EmbeddedCluster

    return EmbeddedCluster(settings.home, settings.cluster_user)


def _engine(settings: DatabaseSettings, *, migrate: bool = True):
    """Connect (starting the embedded cluster on demand) and bring the schema up to date."""
    from geo import migrate as migrations
    from geo.database import connect

    engine = connect(settings)
    if migrate and migrations.current_revision(engine) != migrations.head_revision():
        with console.status(_("Migrating the database schema")):
            migrations.upgrade(engine)
    return engine


@db_app.command("start")
def db_start() -> None:
    """Create (first time) and start the embedded PostGIS database."""
    settings = _settings()
    try:
        _embedded_only(settings, "start")
        cluster = _cluster(settings)
        with console.status(_("Starting the embedded PostGIS database")):
            started = cluster.start()
    except TwinError as error:
        raise _fail(error) from None
    status = cluster.status()
    if started:
        console.print(_(
            "[green]Started[/] the embedded database (pid {pid}) in {data_dir}, socket in "
            "{socket_dir}.", pid=status.pid, data_dir=status.data_dir,
            socket_dir=status.socket_dir))
    else:
        console.print(_(
            "[yellow]Already running:[/] the embedded database (pid {pid}) in {data_dir}; "
            "nothing to do.", pid=status.pid, data_dir=status.data_dir))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded database."""
    settings = _settings()
    try:
        _embedded_only(settings, "stop")
        stopped = _cluster(settings).stop()
    except TwinError as error:
        raise _fail(error) from None
    console.print(
        _("[green]Stopped[/] the embedded database.")
        if stopped
        else _("The embedded database was not running; nothing to do.")
    )


@db_app.command("status")
def db_status() -> None:
    """Tell whether the database is up, with PostgreSQL, PostGIS and schema versions."""
    from geo import migrate as migrations
    from geo.database import create_engine, describe, ensure_postgis, parse_database_url

    settings = _settings()
    table = Table(show_header=False, box=None)
    try:
        if settings.database_url:
            url = parse_database_url(settings.database_url)
            table.add_row("database", f"external: {describe(url)}")
        else:
            cluster = _cluster(settings)
            status = cluster.status()
            table.add_row("database", "embedded")
            table.add_row("data directory", str(status.data_dir))
            if not status.running:
                table.add_row("state", "[yellow]stopped[/] (start it with `twin db start`)")
                console.print(table)
                raise typer.Exit(3)
            table.add_row("state", f"[green]running[/] (pid {status.pid})")
            table.add_row("socket", str(status.socket_dir))
            url = cluster.url
        engine = create_engine(url)
        info = ensure_postgis(engine)
        revision = migrations.current_revision(engine)
    except TwinError as error:
        raise _fail(error) from None
    table.add_row("PostgreSQL", info.postgres_version)
    table.add_row("PostGIS", info.postgis_version)
    head = migrations.head_revision()
    table.add_row(
        "schema",
        f"{revision or 'empty'}"
        + ("" if revision == head else f" (newest is {head}: run `twin db migrate`)"),
    )
    console.print(table)


@db_app.command("migrate")
def db_migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the schema to the newest revision (or the one given)."""
    from geo import migrate as migrations

    try:
        engine = _engine(_settings(), migrate=False)
        before = migrations.current_revision(engine)
        migrations.upgrade(engine, revision)
        after = migrations.current_revision(engine)
    except TwinError as error:
        raise _fail(error) from None
    console.print(
        _("Schema at revision [bold]{revision}[/] (was {before}).", revision=after,
          before=before or _("empty"))
        if before != after else
        _("Schema at revision [bold]{revision}[/]; nothing to do.", revision=after)
    )


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' removes every table.")],
) -> None:
    """Downgrade the schema to an older revision."""
    from geo import migrate as migrations

    try:
        engine = _engine(_settings(), migrate=False)
        migrations.downgrade(engine, revision)
        after = migrations.current_revision(engine)
    except TwinError as error:
        raise _fail(error) from None
    console.print(_("Schema at revision [bold]{revision}[/].",
                    revision=after or _("base (no twin tables)")))


@db_app.command("reset")
def db_reset(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete all of the twin's data and start again with an empty, migrated schema."""
    from geo import migrate as migrations

    settings = _settings()
    where = _("the external database") if settings.database_url else f"{settings.home.absolute()}"
    if not yes:
        if not sys.stdin.isatty():
            raise _fail(TwinError(_("`twin db reset` deletes all twin data; add --yes to "
                                    "confirm.")))
        typer.confirm(_("Delete all twin data in {where}?", where=where), abort=True)
    try:
        if settings.database_url:
            engine = _engine(settings, migrate=False)
            migrations.downgrade(engine, "base")
        else:
            with console.status(_("Deleting the embedded database")):
                _cluster(settings).destroy()
        with console.status(_("Creating an empty database")):
            engine = _engine(settings)
    except TwinError as error:
        raise _fail(error) from None
    console.print(_("[green]Reset:[/] empty schema at revision {revision} in {where}.",
                    revision=migrations.current_revision(engine), where=where))


@sample_app.command("generate")
def sample_generate(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the sample into.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 7,
    scale: Annotated[
        float, typer.Option(min=0.05, max=1000, help="1 is one neighbourhood; 100 is a city.")
    ] = 1.0,
    months: Annotated[int, typer.Option(min=1, max=240, help="Months of history.")] = 24,
) -> None:
    """Write a synthetic neighbourhood in real file formats, with its ground truth apart."""
    from sample_data.generate import generate

    try:
        summary = generate(out, seed=seed, scale=scale, months=months, progress=console)
    except TwinError as error:
        raise _fail(error) from None
    table = Table(title=_("Sample written to {out}", out=out))
    table.add_column(_("file"))
    table.add_column(_("rows"), justify="right")
    for name, rows in summary.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)


@sample_app.command("load")
def sample_load(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="A directory written by `twin sample generate` (default: the committed sample)."
        ),
    ] = None,
) -> None:
    """Load a generated sample into the twin's database (starting and migrating it if needed)."""
    from ingest.sample import load_sample
    from sample_data import SAMPLE_DIR

    try:
        engine = _engine(_settings())
        with _progress() as progress:
            reports = load_sample(engine, directory or SAMPLE_DIR, progress=progress)
    except TwinError as error:
        raise _fail(error) from None
    table = Table(title=_("Loaded"))
    for column in (_("layer"), _("read"), _("new"), _("updated"), _("unchanged"),
                   _("rejected")):
        table.add_column(column, justify="left" if not table.columns else "right")
    for r in reports:
        table.add_row(
            r.layer,
            f"{r.rows_read:,}",
            f"{r.rows_new:,}",
            f"{r.rows_updated:,}",
            f"{r.rows_unchanged:,}",
            f"{r.rows_rejected:,}",
        )
    console.print(table)


def _progress(disable: bool = False):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=disable or not err_console.is_terminal,
    )


metrics_app = typer.Typer(
    help="Declare what can be measured, before readings of it land.", no_args_is_help=True
)
app.add_typer(metrics_app, name="metrics")

LAYER_HELP = ("streets, manholes, parking, compounds, buildings, road_damage, debris_piles "
              "(also written road-damage, debris) or readings")


@app.command("ingest")
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

    from ingest.pipeline import ingest_file

    if layer == "watch":
        _watch(path, source=source, as_json=as_json, group=group, client_id=client_id)
        return
    progress = _progress(disable=as_json)
    try:
        engine = _engine(_settings())
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
        raise _fail(error) from None
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


mapping_app = typer.Typer(
    help="Mapping files: how a city's columns and codes become the twin's fields.",
    no_args_is_help=True,
)
app.add_typer(mapping_app, name="mapping")


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
        raise _fail(error) from None
    except OSError as error:
        raise _fail(InvalidInput(_("{out} cannot be written ({why}).", out=out,
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
        engine = _engine(_settings())
        err_console.print(_("Following {url}; Ctrl-C stops after the current batch.", url=url))
        stats = watch(engine, url, source=source or "mqtt", group=group,
                      client_id=client_id or "twin-ingest")
    except TwinError as error:
        raise _fail(error) from None
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
                raise TwinError("Give either a metric NAME with its options or --file, not both.")
            declarations = metrics_from_toml(file)
        else:
            if name is None:
                raise TwinError("Name the metric, or give --file with many.")
            declarations = [
                MetricDeclaration.checked(
                    name=name,
                    unit=unit,
                    min_value=min_value,
                    max_value=max_value,
                    higher_is_better=higher_is_better,
                    description=description,
                    where="the command",
                )
            ]
        engine = _engine(_settings())
        results = declare_metrics(engine, declarations)
    except TwinError as error:
        raise _fail(error) from None
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

    try:
        engine = _engine(_settings())
        with engine.connect() as conn:
            metrics = store.metric_ranges(conn)
    except TwinError as error:
        raise _fail(error) from None
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


keys_app = typer.Typer(help="API keys for the service: made once, shown once, stored hashed.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="viewer, crew, planner or admin.")],
    name: Annotated[str, typer.Option(help="Who or what holds the key, e.g. crew-north.")],
) -> None:
    """Make an API key; it is printed once and only its hash is kept."""
    from geo import keys

    try:
        if role not in keys.ROLES:
            raise InvalidInput(_("Role '{role}' is not one of {roles}.", role=role,
                                 roles=", ".join(keys.ROLES)))
        engine = _engine(_settings())
        with engine.begin() as conn:
            if keys.key_name_exists(conn, name):
                raise InvalidInput(_("A key named '{name}' exists already; choose another "
                                     "name.", name=name))
            key = keys.create_key(conn, name=name, role=role)
    except TwinError as error:
        raise _fail(error) from None
    err_console.print(_("Key '{name}' with role '{role}' (shown once; keep it safe):",
                        name=name, role=role))
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """Show the keys' names, roles and dates (never the keys)."""
    from geo import keys

    try:
        engine = _engine(_settings())
        with engine.connect() as conn:
            rows = keys.list_keys(conn)
    except TwinError as error:
        raise _fail(error) from None
    table = Table()
    for column in (_("name"), _("role"), _("starts with"), _("created"), _("revoked")):
        table.add_column(column)
    for row in rows:
        table.add_row(row.name, row.role, row.key_prefix, f"{row.created_at:%Y-%m-%d %H:%M}",
                      f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key at once."""
    from geo import keys

    try:
        engine = _engine(_settings())
        with engine.begin() as conn:
            if not keys.revoke_key(conn, name):
                raise InvalidInput(_("There is no live key named '{name}'.", name=name))
    except TwinError as error:
        raise _fail(error) from None
    console.print(_("Revoked '{name}'.", name=name))


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    job_worker: Annotated[bool, typer.Option(
        "--worker/--no-worker", help="Run a job worker in the service (rules on new readings, "
        "scheduled refresh, scoring, training); --no-worker when `twin worker` runs "
        "elsewhere.")] = True,
) -> None:
    """Serve tiles, OGC API Features, alerts, exports and sensor intake over HTTP."""
    import uvicorn

    os.environ["TWIN_RUN_WORKER"] = "true" if job_worker else "false"

    from geo.replicas import parse_replica_urls

    try:
        parse_replica_urls(_settings().replica_urls)  # a mistaken URL is said before serving
        _engine(_settings())  # start and migrate before any worker needs the database
    except TwinError as error:
        raise _fail(error) from None
    settings = _settings()
    if settings.database_url is None:
        from geo.cluster import EmbeddedCluster

        url = EmbeddedCluster(settings.home, settings.cluster_user).url
        os.environ["TWIN_DATABASE_URL"] = url.render_as_string(hide_password=False)
    console.print(_("Serving on {url} (API documentation at /docs).",
                    url=f"http://{host}:{port}"))
    from service.access_log import uvicorn_log_config

    # The log config redacts keys given in query strings.
    uvicorn.run("service.asgi:create", factory=True, host=host, port=port, workers=workers,
                log_level="info", log_config=uvicorn_log_config())


@app.command("worker")
def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Jobs run at once.")] = 2,
) -> None:
    """Run background jobs until stopped: rules on new readings, refresh, scoring, training."""
    import asyncio
    import logging

    from service.jobs import run_worker

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("twin").setLevel(logging.INFO)
    try:
        engine = _engine(_settings())
    except TwinError as error:
        raise _fail(error) from None
    err_console.print(_("Running jobs; Ctrl-C stops after the current ones."))
    asyncio.run(run_worker(engine, concurrency=concurrency))


# Registered last: these modules import the helpers above.
from service.cli_export import export  # noqa: E402
from service.cli_maps import demo, map_command  # noqa: E402
from service.cli_predict import alerts_app, predict_app  # noqa: E402
from service.open311 import requests_app  # noqa: E402

app.command("export")(export)
app.add_typer(predict_app, name="predict")
app.add_typer(alerts_app, name="alerts")
app.add_typer(requests_app, name="requests")
app.command("map")(map_command)
app.command("demo")(demo)


def run() -> None:
    """Entry point of the ``twin`` script: a bug is reported in one line, not a traceback."""
    set_locale(default_locale())
    try:
        app()
    except Exception as error:  # noqa: BLE001 - the last line of defence for the user
        if os.environ.get("TWIN_DEBUG"):
            raise
        what = f"{type(error).__name__}: {error}"
        err_console.print(
            _("Internal error (a bug in twin, not in your input): {error}. Run again with "
              "TWIN_DEBUG=1 for the traceback.", error=what),
            style="bold red", highlight=False, soft_wrap=True,
        )
        sys.exit(1)
