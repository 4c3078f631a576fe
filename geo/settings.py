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
    # Hot standbys of the database, for reads that may lag a moment (tiles, OGC items, exports,
    # maps): PostgreSQL URLs separated by commas or spaces (geo/replicas.py). None: all reads
    # go to the one database.
    replica_urls: str | None = None
    # A replica further behind than this, in seconds, is out of rotation until it catches up.
    replica_max_lag_s: float = 5.0
    # How often each replica's state and lag are checked, in seconds.
    replica_check_s: float = 0.5


# PCI 55 is the top of "Poor" (ASTM D6433): forecasts alert on crossing it and streets below it
# form the planning backlog. Other metrics use the middle of their declared range.
PCI_THRESHOLD = 55.0


class LoopSettings(BaseSettings):
    """The operations loop: when background work runs and how much a crew can do.

    Schedules are cron expressions in UTC (five fields; a sixth in front is seconds), read
    when the worker starts: ``TWIN_REFRESH_CRON``, ``TWIN_SCORE_CRON``, ``TWIN_TRAIN_CRON``.
    """

    model_config = SettingsConfigDict(env_prefix="TWIN_", extra="ignore")

    # Alerts refresh (road-wear forecasts, manhole rules, overdue requests): every 15 minutes.
    refresh_cron: str = "*/15 * * * *"
    # Road-wear forecasts for every street: daily at 02:30.
    score_cron: str = "30 2 * * *"
    # A new road-wear model: weekly, Sunday 03:00 (a fit takes ~25 s on the sample).
    train_cron: str = "0 3 * * 0"
    # Jobs of workers that stopped sending heartbeats go back to the queue: every minute.
    stalled_cron: str = "* * * * *"
    # A scoring run's parts: a district's streets, small districts packed and large ones
    # sliced to at most this many streets per job (predict/batch.py).
    score_part_streets: int = 2000
    # Alerts a crew can clear in a week: the most the top tier ("this week") of /work holds.
    weekly_capacity: int = 20
    # Photos of work: largest accepted upload, and where they are kept (TWIN_HOME/photos
    # when not set).
    photo_max_bytes: int = 10 * 1024 * 1024
    photo_dir: Path | None = None
