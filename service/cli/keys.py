"""``twin keys``: the service's API keys, made once, shown once, stored hashed."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from geo.errors import InvalidInput, TwinError
from geo.i18n import _
from service.cli.common import (
    console,
    err_console,
    fail,
    open_engine,
    read_database,
)

keys_app = typer.Typer(help="API keys for the service: made once, shown once, stored hashed.",
                       no_args_is_help=True)


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
        engine = open_engine()
        with engine.begin() as conn:
            if keys.key_name_exists(conn, name):
                raise InvalidInput(_("A key named '{name}' exists already; choose another "
                                     "name.", name=name))
            key = keys.create_key(conn, name=name, role=role)
    except TwinError as error:
        raise fail(error) from None
    err_console.print(_("Key '{name}' with role '{role}' (shown once; keep it safe):",
                        name=name, role=role))
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """Show the keys' names, roles and dates (never the keys)."""
    from geo import keys

    rows = read_database(keys.list_keys)
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
        engine = open_engine()
        with engine.begin() as conn:
            if not keys.revoke_key(conn, name):
                raise InvalidInput(_("There is no live key named '{name}'.", name=name))
    except TwinError as error:
        raise fail(error) from None
    console.print(_("Revoked '{name}'.", name=name))
