"""What every ``twin`` command shares: the consoles, the database, errors and progress bars.

The command groups (``service/cli/db.py``, ``ingest.py``, ...) import these names and nothing
else from each other. A command follows one pattern::

    try:
        engine = open_engine()
        ...
    except TwinError as error:
        raise fail(error) from None

so that bad input is one sentence on stderr with the error's exit code (2 for an unusable
file, 1 otherwise), never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from geo.errors import TwinError
from geo.i18n import _
from geo.settings import DatabaseSettings

if TYPE_CHECKING:
    from rich.progress import Progress
    from sqlalchemy.engine import Connection, Engine

    from geo.cluster import EmbeddedCluster

T = TypeVar("T")


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
    # Set by the root command's callback (service/cli/__init__.py) before any command runs.
    database_url: str | None = None


state = _State()


def database_settings() -> DatabaseSettings:
    """The ``TWIN_*`` database settings, with ``--database-url`` taking precedence."""
    settings = DatabaseSettings()
    if state.database_url:
        settings = settings.model_copy(update={"database_url": state.database_url})
    return settings


def fail(error: TwinError) -> typer.Exit:
    """Say what went wrong in one line on stderr; raise the returned exit from the command."""
    from rich.markup import escape

    label = _("Error:")
    # Escaped: a message may name a mapping's [metrics] table, which rich would take as markup.
    err_console.print(f"[bold red]{label}[/] {escape(str(error))}", highlight=False,
                      soft_wrap=True)
    return typer.Exit(error.exit_code)


def embedded_cluster(settings: DatabaseSettings) -> EmbeddedCluster:
    """The embedded PostgreSQL cluster under ``TWIN_HOME`` (not started by this)."""
    from geo.cluster import EmbeddedCluster

    return EmbeddedCluster(settings.home, settings.cluster_user)


def open_engine(settings: DatabaseSettings | None = None, *, migrate: bool = True) -> Engine:
    """Connect (starting the embedded cluster on demand) and bring the schema up to date."""
    from geo import migrate as migrations
    from geo.database import connect

    engine = connect(settings or database_settings())
    if migrate and migrations.current_revision(engine) != migrations.head_revision():
        with console.status(_("Migrating the database schema")):
            migrations.upgrade(engine)
    return engine


def read_database(read: Callable[[Connection], T]) -> T:
    """What ``read`` finds on a connection to the twin's database (the pattern above, read-only)."""
    try:
        engine = open_engine()
        with engine.connect() as conn:
            return read(conn)
    except TwinError as error:
        raise fail(error) from None


def progress_bar(disable: bool = False) -> Progress:
    """A progress bar on stderr, shown only on a terminal (logs and pipes stay clean)."""
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
