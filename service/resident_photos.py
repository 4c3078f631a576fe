"""Residents' photos (``/report``, chat intake): checked by their bytes, kept by their hash.

The formats and the photo directory are the crews' (``service/routers/alerts.py``); residents'
photos go under ``residents/`` there and are served only to keyed callers.
"""

from __future__ import annotations

import hashlib

from geo.errors import InvalidInput
from service.routers.alerts import photo_dir, photo_type


def check_photo(data: bytes, limit: int, what: str = "photo") -> tuple[bytes, str, str]:
    """(bytes, media type, suffix) of a JPEG, PNG or WebP within ``limit`` bytes."""
    if len(data) > limit:
        raise InvalidInput(f"{what}: the photo is larger than {limit // (1024 * 1024)} MB.")
    kind = photo_type(data[:16])
    if kind is None:
        raise InvalidInput(f"{what}: the file is not a JPEG, PNG or WebP image.")
    return data, *kind


def keep_photo(data: bytes, suffix: str) -> tuple[str, str]:
    """Write a photo once (the same bytes are one file); its sha256 and relative path."""
    digest = hashlib.sha256(data).hexdigest()
    relative = f"residents/{digest[:2]}/{digest}{suffix}"
    target = photo_dir() / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)
    return digest, relative
