"""Dependencies shared by the routers: the database, the settings and who is asking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.engine import Engine

from civic import workflow
from geo import keys
from geo.i18n import _
from service.errors import Forbidden, Unauthorized, problem_response
from service.settings import ServiceSettings

ROLE_RANK = {role: rank for rank, role in enumerate(keys.ROLES)}


async def get_engine(request: Request) -> Engine:
    """The engine the app opened in its lifespan."""
    return request.app.state.engine


def reader_engine(state) -> Engine:
    """The engine for reads that may lag a moment behind the primary (``geo/replicas.py``).

    A replica in rotation that has every change this process knows of, else the primary;
    with no replicas configured, the primary engine itself. ``state.reads`` is built in the
    app's lifespan (``service/app.py``).
    """
    return state.reads.engine


async def get_reader_engine(request: Request) -> Engine:
    """The reader engine: tiles, OGC items, exports and maps read through it."""
    return reader_engine(request.app.state)


async def get_settings(request: Request) -> ServiceSettings:
    """The settings the app was made with."""
    return request.app.state.settings


def classifier(request: Request) -> workflow.Classify:
    """The triage model of the app (made in ``create_app``), as a function of a text."""
    models = request.app.state.triage

    def classify(text: str) -> tuple[str, str, float]:
        model, _ = models.current()
        return model.classify(text)

    return classify


EngineDep = Annotated[Engine, Depends(get_engine)]
ReaderEngineDep = Annotated[Engine, Depends(get_reader_engine)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]


@dataclass(frozen=True)
class Caller:
    """Who is asking: a named key with a role, or nobody (anonymous)."""

    name: str | None
    role: str | None

    def has(self, role: str) -> bool:
        """Whether the caller's role is ``role`` or above."""
        return self.role is not None and ROLE_RANK[self.role] >= ROLE_RANK[role]


def get_caller(
    engine: EngineDep,
    x_api_key: Annotated[str | None, Header(description="An API key made with "
                                            "`twin keys create`.")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    """Identify the caller from ``X-API-Key`` or ``Authorization: Bearer``."""
    key = x_api_key
    if key is None and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    return caller_of_key(engine, key)


def caller_of_key(engine: Engine, key: str | None) -> Caller:
    """The caller a key names (anonymous without one); Unauthorized for a key that is not valid.

    The one key check of the service: ``get_caller`` reads the key from the headers, Open311
    from its ``api_key`` field as the spec has it.
    """
    if not key:
        return Caller(None, None)
    with engine.connect() as conn:
        found = keys.role_of_key(conn, key)
    if found is None:
        raise Unauthorized(_("The API key is not valid (unknown or revoked)."))
    return Caller(*found)


CallerDep = Annotated[Caller, Depends(get_caller)]


def require(role: str):
    """A dependency that lets through callers with ``role`` or above."""

    def check(caller: CallerDep) -> Caller:
        if caller.role is None:
            raise Unauthorized(_("This needs an API key with the role '{role}' or above.",
                                 role=role))
        if not caller.has(role):
            raise Forbidden(_("The key '{name}' has the role '{has}'; this needs '{role}' or "
                              "above.", name=caller.name, has=caller.role, role=role))
        return caller

    return check


def require_reader(caller: CallerDep, settings: SettingsDep) -> Caller:
    """Let anyone read when reading is open; otherwise any valid key."""
    if settings.open_read or caller.role is not None:
        return caller
    raise Unauthorized(_("Reading needs an API key on this service."))


ReaderDep = Annotated[Caller, Depends(require_reader)]
CrewDep = Annotated[Caller, Depends(require("crew"))]
# What a route taking CrewDep answers a caller without a crew key, for its OpenAPI responses.
CREW_KEY_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem_response("No valid API key."),
    403: problem_response("The key's role is below crew."),
}
PlannerDep = Annotated[Caller, Depends(require("planner"))]
AdminDep = Annotated[Caller, Depends(require("admin"))]
