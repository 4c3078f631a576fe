"""``twin db``: start, stop, inspect, migrate and reset the twin's database."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from geo.errors import TwinError
from geo.i18n import _
from geo.settings import DatabaseSettings
from service.cli.common import (
    console,
    database_settings,
    embedded_cluster,
    fail,
    open_engine,
)

db_app = typer.Typer(
    help="Manage the twin's database (the embedded cluster by default).", no_args_is_help=True
)


def _embedded_only(settings: DatabaseSettings, command: str) -> None:
    if settings.database_url:
        raise TwinError(_(
            "`twin db {command}` manages the embedded database, but TWIN_DATABASE_URL "
            "points twin at an external one; unset it to manage the embedded database.",
            command=command))


@db_app.command("start")
def db_start() -> None:
    """Create (first time) and start the embedded PostGIS database."""
    settings = database_settings()
    try:
        _embedded_only(settings, "start")
        cluster = embedded_cluster(settings)
        with console.status(_("Starting the embedded PostGIS database")):
            started = cluster.start()
    except TwinError as error:
        raise fail(error) from None
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
    settings = database_settings()
    try:
        _embedded_only(settings, "stop")
        stopped = embedded_cluster(settings).stop()
    except TwinError as error:
        raise fail(error) from None
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

    settings = database_settings()
    table = Table(show_header=False, box=None)
    try:
        if settings.database_url:
            url = parse_database_url(settings.database_url)
            table.add_row("database", f"external: {describe(url)}")
        else:
            cluster = embedded_cluster(settings)
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
        raise fail(error) from None
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
        engine = open_engine(migrate=False)
        before = migrations.current_revision(engine)
        migrations.upgrade(engine, revision)
        after = migrations.current_revision(engine)
    except TwinError as error:
        raise fail(error) from None
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
        engine = open_engine(migrate=False)
        migrations.downgrade(engine, revision)
        after = migrations.current_revision(engine)
    except TwinError as error:
        raise fail(error) from None
    console.print(_("Schema at revision [bold]{revision}[/].",
                    revision=after or _("base (no twin tables)")))


@db_app.command("reset")
def db_reset(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete all of the twin's data and start again with an empty, migrated schema."""
    from geo import migrate as migrations

    settings = database_settings()
    where = _("the external database") if settings.database_url else f"{settings.home.absolute()}"
    if not yes:
        if not sys.stdin.isatty():
            raise fail(TwinError(_("`twin db reset` deletes all twin data; add --yes to "
                                    "confirm.")))
        typer.confirm(_("Delete all twin data in {where}?", where=where), abort=True)
    try:
        if settings.database_url:
            engine = open_engine(settings, migrate=False)
            migrations.downgrade(engine, "base")
        else:
            with console.status(_("Deleting the embedded database")):
                embedded_cluster(settings).destroy()
        with console.status(_("Creating an empty database")):
            engine = open_engine(settings)
    except TwinError as error:
        raise fail(error) from None
    console.print(_("[green]Reset:[/] empty schema at revision {revision} in {where}.",
                    revision=migrations.current_revision(engine), where=where))


