"""``twin requests``: residents' requests (Open311) past their SLA, and the triage's accuracy."""

from __future__ import annotations

import typer

from geo.errors import TwinError
from service.cli.common import console, fail, open_engine

requests_app = typer.Typer(help="Resident requests (Open311): SLA escalation and triage.",
                           no_args_is_help=True)


@requests_app.command("check-overdue")
def check_overdue() -> None:
    """Raise an alert for every open request past its expected time."""
    from civic.workflow import escalate_overdue

    try:
        with open_engine().begin() as conn:
            escalated = escalate_overdue(conn)
    except TwinError as error:
        raise fail(error) from None
    console.print(f"Escalated {len(escalated)} overdue request(s)"
                  + (": " + ", ".join(f"{r} -> alert {a}" for r, a in escalated)
                     if escalated else "."))


@requests_app.command("evaluate")
def evaluate_classifier() -> None:
    """Print triage accuracy (matter and department) per language and per matter."""
    from predict.triage import evaluate

    print(evaluate().as_markdown())
