"""The ``twin`` command: the single entry point to the neighbourhood twin.

One module per command group, each importing only ``service.cli.common`` (consoles, database,
errors, progress bars) from here:

=============================  ======================================================
``twin db ...``                ``service/cli/db.py``
``twin sample ...``            ``service/cli/sample.py``
``twin ingest``, ``mapping``,  ``service/cli/ingest.py`` (files, MQTT feeds, mappings,
``metrics``                    metric declarations)
``twin keys ...``              ``service/cli/keys.py``
``twin serve``, ``worker``     ``service/cli/serve.py``
``twin export``                ``service/cli/export.py``
``twin map``, ``demo``         ``service/cli/maps.py``
``twin predict``, ``alerts``   ``service/cli/predict.py``
``twin requests ...``          ``service/cli/requests.py``
=============================  ======================================================

Commands import what they run (pandas, SQLAlchemy, scikit-learn...) inside their function, so
that ``twin --help`` and a mistaken option answer at once.
"""

from __future__ import annotations

import os
import sys

import typer

from geo.i18n import _, default_locale, set_locale
from service.cli import db, export, ingest, keys, maps, predict, requests, sample, serve
from service.cli.common import DatabaseUrlOption, err_console, state

app = typer.Typer(
    help="Neighbourhood Twin: streets, manholes, parking and compounds on PostGIS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(database_url: DatabaseUrlOption = None) -> None:
    """Neighbourhood Twin: streets, manholes, parking and compounds on PostGIS."""
    state.database_url = database_url
    # The run speaks the deployment's language (TWIN_LANGUAGE).
    set_locale(default_locale())


# The commands, then the groups, in the order `twin --help` lists them.
app.command("ingest")(ingest.ingest)
app.command("serve")(serve.serve)
app.command("worker")(serve.worker)
app.command("export")(export.export)
app.command("map")(maps.map_command)
app.command("demo")(maps.demo)
app.add_typer(db.db_app, name="db")
app.add_typer(sample.sample_app, name="sample")
app.add_typer(ingest.metrics_app, name="metrics")
app.add_typer(ingest.mapping_app, name="mapping")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(predict.predict_app, name="predict")
app.add_typer(predict.alerts_app, name="alerts")
app.add_typer(requests.requests_app, name="requests")


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
