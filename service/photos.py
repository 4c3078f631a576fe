"""Photos the twin keeps (crews' work, residents' reports): checked by their bytes, kept by hash.

A photo is told by its first bytes (never by its name or header) and written once under
``photo_dir()``: the same bytes are one file, named by their sha256. Photos are served only to
callers with a key.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from geo.errors import InvalidInput
from geo.i18n import _
from geo.settings import DatabaseSettings, LoopSettings

# The formats a phone camera gives, told by their first bytes.
PHOTO_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
)


def photo_type(head: bytes) -> tuple[str, str] | None:
    """(media type, suffix) of a JPEG, PNG or WebP by its magic bytes, else None."""
    for magic, media, suffix in PHOTO_MAGIC:
        if head.startswith(magic):
            return media, suffix
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return None


def photo_dir() -> Path:
    """Where photos are kept: TWIN_PHOTO_DIR, else TWIN_HOME/photos."""
    return LoopSettings().photo_dir or DatabaseSettings().home / "photos"


def check_photo(data: bytes, limit: int, what: str | None = None) -> tuple[bytes, str, str]:
    """(bytes, media type, suffix) of a JPEG, PNG or WebP within ``limit`` bytes.

    ``what`` names the field in the message when a form has several photos.
    """
    if len(data) > limit:
        problem = _("The photo is larger than {mb} MB.", mb=limit // (1024 * 1024))
    elif (kind := photo_type(data[:16])) is None:
        problem = _("The file is not a JPEG, PNG or WebP image.")
    else:
        return data, *kind
    raise InvalidInput(_("{field}: {problem}", field=what, problem=problem) if what
                       else problem)


def keep_photo(data: bytes, suffix: str, folder: str = "") -> tuple[str, str]:
    """Write a photo once (the same bytes are one file); its sha256 and path in photo_dir()."""
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{folder}{digest[:2]}/{digest}{suffix}"
    target = photo_dir() / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        # A name of this write's own: two uploads of the same bytes at once must not share
        # (and rename away) one partial file. The rename is atomic; the last one wins.
        partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.part")
        partial.write_bytes(data)
        partial.replace(target)
    return digest, relative
