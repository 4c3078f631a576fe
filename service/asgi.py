"""The ASGI app for uvicorn workers: ``uvicorn --factory service.asgi:create``.

A factory, not an app built at import: importing this module connects to nothing (building
the app may start the embedded cluster). Each uvicorn worker calls :func:`create` once and
connects with the ``TWIN_*`` settings.
"""

from fastapi import FastAPI

from geo.database import connect
from geo.settings import DatabaseSettings
from service.app import create_app


def create() -> FastAPI:
    """The twin's app on the database the ``TWIN_*`` settings name."""
    return create_app(connect(DatabaseSettings()))
