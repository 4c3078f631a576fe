"""API keys: made once and shown once, kept only as a hash, each with one role."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

ROLES = ("viewer", "crew", "planner", "admin")


def hash_key(key: str) -> str:
    """SHA-256 of a key: keys are long random strings, so a slow hash would add nothing."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(conn: Connection, *, name: str, role: str) -> str:
    """Store a new key for ``role`` under ``name`` and return the key itself (shown once)."""
    key = f"twin_{secrets.token_urlsafe(32)}"
    conn.execute(
        sa.text("INSERT INTO api_keys (name, role, key_hash, key_prefix) "
                "VALUES (:name, :role, :hash, :prefix)"),
        {"name": name, "role": role, "hash": hash_key(key), "prefix": key[:9]},
    )
    return key


def key_name_exists(conn: Connection, name: str) -> bool:
    """Whether a key of that name exists (revoked or not)."""
    return conn.execute(sa.text("SELECT 1 FROM api_keys WHERE name = :n"), {"n": name}).first() \
        is not None


def role_of_key(conn: Connection, key: str) -> tuple[str, str] | None:
    """(name, role) of a live key, or None for an unknown or revoked one."""
    row = conn.execute(
        sa.text("SELECT name, role FROM api_keys WHERE key_hash = :hash AND revoked_at IS NULL"),
        {"hash": hash_key(key)},
    ).first()
    return (row.name, row.role) if row else None


def revoke_key(conn: Connection, name: str) -> bool:
    """Revoke a key by name; return False if there is no live key of that name."""
    return conn.execute(
        sa.text("UPDATE api_keys SET revoked_at = now() WHERE name = :n AND revoked_at IS NULL"),
        {"n": name},
    ).rowcount == 1


def list_keys(conn: Connection) -> Sequence[sa.Row]:
    """Every key's name, role, prefix and dates (never the key)."""
    return conn.execute(sa.text(
        "SELECT name, role, key_prefix, created_at, revoked_at FROM api_keys ORDER BY name"
    )).all()
