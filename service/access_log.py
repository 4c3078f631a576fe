"""The access log of ``twin serve`` without secrets: keys in query strings are redacted.

Open311 clients send their key as ``?api_key=`` (the GeoReport v2 spec asks for it there), and
uvicorn writes every request line to its access log as received. :class:`RedactKeys` is a
logging filter that replaces the value of key-like query parameters before the line is
formatted; :func:`uvicorn_log_config` is uvicorn's own logging configuration with the filter
on its handlers, so every worker process gets it too.
"""

from __future__ import annotations

import copy
import logging
import re

# api_key, apikey, api-key (also with the underscore percent-encoded), key, access_token.
_SECRET_PARAM = re.compile(
    r"(?i)((?:^|[?&;])(?:api(?:_|-|%5f)?key|key|access_token)=)[^&;\s\"#]*")
REDACTED = "[redacted]"


def redact_query(text: str) -> str:
    """``text`` with the values of key-like query parameters replaced.

    >>> redact_query("/open311/v2/requests.json?api_key=s3cret&status=open")
    '/open311/v2/requests.json?api_key=[redacted]&status=open'
    >>> redact_query("/ogc/collections?limit=1")
    '/ogc/collections?limit=1'
    """
    return _SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, text)


class RedactKeys(logging.Filter):
    """Redact key-like query parameters in a log record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drop it."""
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query(a) if isinstance(a, str) else a
                                for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact_query(record.msg)
        return True


def uvicorn_log_config() -> dict:
    """Uvicorn's default logging configuration with :class:`RedactKeys` on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_keys"] = {"()": f"{__name__}.RedactKeys"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_keys")
    return config
