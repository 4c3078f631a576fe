"""Settings of the storage layer, read from ``TWIN_*`` environment variables when built."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    """Where the twin's PostGIS database is.

    Without ``TWIN_DATABASE_URL`` the twin runs an embedded PostgreSQL + PostGIS cluster
    of its own under ``TWIN_HOME``.
    """

    model_config = SettingsConfigDict(env_prefix="TWIN_", extra="ignore")

    database_url: str | None = None
    home: Path = Path(".twin")
    # PostgreSQL refuses to run as root; as root, the embedded cluster runs under this account.
    cluster_user: str = "postgres"
