"""A registry of versioned models, kept in the ``models`` table in skops format.

skops stores an estimator as data (no pickle): loading never runs code from the file, and
only types this project trusts are rebuilt. A model made with another scikit-learn version
is refused with a sentence saying how to fix it, because boosted trees do not promise to
load or predict the same across versions.
"""

from __future__ import annotations

import hashlib
import platform
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sqlalchemy.engine import Connection

from geo import predictions as sql
from geo.errors import NotFound, TwinError
from geo.i18n import _

# Types outside scikit-learn's and numpy's own that a stored model may hold.
TRUSTED_PREFIXES = ("predict.", "sklearn.", "numpy.", "builtins.")
# Standard-library types scikit-learn's boosted trees hold (their loss functions).
TRUSTED_TYPES = ("functools.partial",)


class ModelIncompatible(TwinError):
    """A stored model cannot be used by this installation."""


def _skops():
    try:
        import skops.io as sio
    except ImportError:  # pragma: no cover - a packaging error, said in one sentence
        raise TwinError(_("The model registry needs the 'skops' package; install it with "
                          "`pip install skops`.")) from None
    return sio


def library_versions() -> dict:
    """Versions of the libraries a stored model depends on."""
    import scipy

    versions = {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                "numpy": np.__version__, "pandas": pd.__version__, "scipy": scipy.__version__}
    try:
        import skops

        versions["skops"] = skops.__version__
    except ImportError:  # pragma: no cover
        pass
    return versions


def dumps(estimator) -> bytes:
    """Serialise an estimator in skops format."""
    return _skops().dumps(estimator)


def loads(data: bytes, *, versions: dict, version: str = "the model"):
    """Rebuild an estimator from skops bytes, refusing other scikit-learn versions.

    Raises
    ------
    ModelIncompatible
        When the model was made with another scikit-learn, or holds an untrusted type.
    """
    made_with = versions.get("scikit-learn")
    if made_with != sklearn.__version__:
        raise ModelIncompatible(_(
            "Model {version} was made with scikit-learn {made_with} but this installation "
            "has {installed}; train it again with `twin predict train`.", version=version,
            made_with=made_with, installed=sklearn.__version__))
    sio = _skops()
    untrusted = sio.get_untrusted_types(data=data)
    refused = [t for t in untrusted
               if not t.startswith(TRUSTED_PREFIXES) and t not in TRUSTED_TYPES]
    if refused:
        raise ModelIncompatible(_("Model {version} holds types this twin does not trust: "
                                  "{types}.", version=version, types=", ".join(refused)))
    return sio.loads(data, trusted=untrusted)


def new_version(target: str, metric: str | None, payload: bytes) -> str:
    """A model version: target, metric, UTC time and the start of the bytes' hash."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    digest = hashlib.sha256(payload).hexdigest()[:8]
    return f"{target}-{metric or 'all'}-{stamp}-{digest}"


def save(conn: Connection, *, target: str, metric: str | None, estimator, train_from,
         train_to, rows: int, metrics: dict, features: list[str], params: dict) -> str:
    """Store a fitted estimator with its description; return its version."""
    payload = dumps(estimator)
    version = new_version(target, metric, payload)
    sql.insert_model(conn, version=version, target=target, metric=metric,
                     train_from=train_from, train_to=train_to, rows=rows, metrics=metrics,
                     features=features, params=params, library_versions=library_versions(),
                     skops=payload, sha256=hashlib.sha256(payload).hexdigest())
    return version


def load(conn: Connection, *, target: str, metric: str | None = None,
         version: str | None = None) -> tuple[Any, dict]:
    """The estimator and registry row of a version, or of the newest model for a target.

    Raises
    ------
    NotFound
        When there is no such model.
    ModelIncompatible
        When it cannot be used by this installation.
    """
    row = sql.get_model(conn, version) if version else sql.latest_model(conn, target, metric)
    if row is None:
        if version:
            missing = _("There is no model {version}; train one with `twin predict train`.",
                        version=version)
        elif metric:
            missing = _("There is no {target} model for '{metric}'; train one with "
                        "`twin predict train`.", target=target, metric=metric)
        else:
            missing = _("There is no {target} model; train one with `twin predict train`.",
                        target=target)
        raise NotFound(missing)
    if hashlib.sha256(row["skops"]).hexdigest() != row["sha256"]:
        raise ModelIncompatible(_("Model {version} is damaged (its checksum differs).",
                                  version=row["version"]))
    estimator = loads(bytes(row["skops"]), versions=row["library_versions"],
                      version=row["version"])
    return estimator, row
