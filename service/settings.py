"""Settings of the HTTP service, read from ``TWIN_*`` environment variables when built."""

from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.intake import MAX_BYTES as READINGS_MAX_BYTES


class ServiceSettings(BaseSettings):
    """How the service answers: who may read, from where, and how much at once."""

    model_config = SettingsConfigDict(env_prefix="TWIN_", extra="ignore")

    # Reading (tiles, features, alerts, exports) needs no key when True; writing always does.
    open_read: bool = True
    cors_origins: list[str] = []
    # Features per page of OGC API items: the default and the most a client may ask for.
    items_default_limit: int = 100
    items_max_limit: int = 10_000
    # Tiles kept in memory, shared by all layers; invalidated per layer when data changes.
    tile_cache_mb: int = 256
    # Redis shared by every node (e.g. redis://127.0.0.1:6379/0): a tile drawn by one node is
    # served from it by the others. Unset: each process keeps only its own cache.
    redis_url: str | None = None
    # Seconds a client is told to wait when the database is away.
    retry_after_s: int = 5
    # Request bodies, in bytes, per route family (service/limits.py): over it is 413, read no
    # further. Sensor batches are the large ones; residents' forms and JSON notes are small.
    max_body_bytes: int = 1_000_000
    max_body_bytes_readings: int = READINGS_MAX_BYTES
    max_body_bytes_open311: int = 64_000
    # Residents' /report (no key): rate limits per device (X-Device-Id, else the address) and
    # per client address, in the limits library's notation; kept in memory per process unless
    # a shared store is given (e.g. redis://127.0.0.1:6379/0). Behind a proxy the address is
    # the proxy's: run uvicorn with --proxy-headers.
    report_limit_device: str = "10/hour"
    report_limit_address: str = "60/hour"
    rate_limit_storage: str = "memory://"
    report_photo_max_bytes: int = 5 * 1024 * 1024
    # Run a job worker (service/jobs.py) inside the service; `twin serve` sets it unless
    # --no-worker, so the embedded demo needs no second command.
    run_worker: bool = False
