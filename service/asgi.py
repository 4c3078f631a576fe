"""The ASGI app for uvicorn workers: each worker connects with the ``TWIN_*`` settings."""

from geo.database import connect
from geo.settings import DatabaseSettings
from service.app import create_app

app = create_app(connect(DatabaseSettings()))
