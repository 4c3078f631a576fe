"""``twin sample``: write a synthetic neighbourhood, or load one through the real ingest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from geo.errors import TwinError
from geo.i18n import _
from service.cli.common import console, fail, open_engine, progress_bar

sample_app = typer.Typer(help="Generate and load synthetic neighbourhoods.", no_args_is_help=True)


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
        raise fail(error) from None
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
        engine = open_engine()
        with progress_bar() as progress:
            reports = load_sample(engine, directory or SAMPLE_DIR, progress=progress)
    except TwinError as error:
        raise fail(error) from None
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
