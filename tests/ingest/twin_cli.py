"""Helpers the ingest tests share: `twin` as a user runs it, and one-value queries."""

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

TWIN = str(Path(sys.executable).parent / "twin")


def scalar(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def run_twin(engine, *args, timeout=120, **settings):
    """`twin ARGS` in its own process on ``engine``'s database, output captured.

    ``settings`` are further environment variables (``TWIN_LANGUAGE="zh"``, say).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env["TWIN_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
    env["COLUMNS"] = "200"
    env.update(settings)
    return subprocess.run([TWIN, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)
