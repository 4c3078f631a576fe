"""The outbox of resident requests and its webhook deliveries: every SQL statement of them.

Each status change and staff reply of a request is written to ``request_outbox`` by
:func:`record` in the same transaction as the change, with one ``webhook_deliveries`` row per
active subscription and a delivery job queued on procrastinate (``DELIVER_TASK``): the change,
its deliveries and the job commit together or not at all. Deliveries are made in order per
request and receiver: only the oldest pending delivery of a (receiver, request) pair is due
(:func:`due_heads`), so a later change never overtakes an earlier one that failed.
"""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo.errors import NotFound
from geo.i18n import _

DELIVER_TASK = "deliver_webhooks"  # procrastinate task name (service/jobs.py registers it)
DELIVER_QUEUE = "webhooks"
DELIVER_LOCK = "deliver_webhooks"
RESIDENT_ACTORS = ("report:", "chat:")  # actor names that carry a device or a chat sender id


def record(conn: Connection, request_id: int, kind: str, *, previous: str | None,
           note: str | None, at_actor: str) -> int:
    """Put one change of a request in the outbox, for every active subscription; its id.

    The payload is what a receiver needs to tell the reporter: never the reporter's contact
    (a resident's device or chat id is part of the actor name of their own posts: "resident").
    """
    if at_actor.startswith(RESIDENT_ACTORS):
        at_actor = "resident"
    outbox_id = conn.execute(sa.text(
        "INSERT INTO request_outbox (request_id, kind, payload) "
        "SELECT r.id, :kind, jsonb_build_object("
        " 'service_request_id', r.id::text, 'kind', CAST(:kind AS text), "
        " 'status', r.status, 'previous_status', CAST(:previous AS text), "
        " 'note', CAST(:note AS text), 'actor', CAST(:actor AS text), "
        " 'service_code', r.service_code, 'matter', r.matter, 'department', r.department, "
        " 'responsible_party', r.responsible_party, 'channel', r.channel, "
        " 'chat_group_id', r.chat_group_id, 'duplicate_of', r.duplicate_of::text, "
        " 'at', to_char(clock_timestamp() AT TIME ZONE 'UTC', "
        "               'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')) "
        "FROM service_requests r WHERE r.id = :id RETURNING id"),
        {"id": request_id, "kind": kind, "previous": previous, "note": note,
         "actor": at_actor}).scalar_one()
    added = conn.execute(sa.text(
        "INSERT INTO webhook_deliveries (outbox_id, subscription_id, request_id) "
        "SELECT :o, id, :r FROM webhook_subscriptions WHERE active"),
        {"o": outbox_id, "r": request_id}).rowcount
    if added:
        queue_delivery(conn)
    return outbox_id


def queue_delivery(conn: Connection, at: datetime | None = None) -> None:
    """Queue one delivery job (at ``at``, else now) unless one waits; an earlier time wins."""
    conn.execute(sa.text(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, queueing_lock, lock, args, "
        "scheduled_at) VALUES (:queue, :task, :lock, :lock, '{}'::jsonb, :at) "
        "ON CONFLICT (queueing_lock) WHERE status = 'todo' DO UPDATE SET scheduled_at = "
        "CASE WHEN EXCLUDED.scheduled_at IS NULL OR procrastinate_jobs.scheduled_at IS NULL "
        "THEN NULL ELSE least(EXCLUDED.scheduled_at, procrastinate_jobs.scheduled_at) END"),
        {"queue": DELIVER_QUEUE, "task": DELIVER_TASK, "lock": DELIVER_LOCK, "at": at})


def due_heads(conn: Connection, limit: int = 100) -> list[dict]:
    """The oldest pending delivery of each (receiver, request) pair, if it is due now."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT d.outbox_id, d.subscription_id, d.request_id, d.attempts, o.kind, o.payload, "
        "s.url, s.secret FROM (SELECT DISTINCT ON (subscription_id, request_id) * "
        " FROM webhook_deliveries WHERE status = 'pending' "
        " ORDER BY subscription_id, request_id, outbox_id) d "
        "JOIN request_outbox o ON o.id = d.outbox_id "
        "JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active "
        "WHERE d.next_attempt_at <= now() ORDER BY d.outbox_id LIMIT :limit"),
        {"limit": limit}).mappings()]


def mark_delivered(conn: Connection, subscription_id: int, outbox_id: int) -> None:
    """A receiver took a change (2xx)."""
    conn.execute(sa.text(
        "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), "
        "attempts = attempts + 1, last_error = NULL "
        "WHERE subscription_id = :s AND outbox_id = :o"), {"s": subscription_id, "o": outbox_id})


def mark_failed(conn: Connection, subscription_id: int, outbox_id: int, error: str,
                retry_in_s: float) -> None:
    """A receiver did not take a change: try again in ``retry_in_s`` seconds."""
    conn.execute(sa.text(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = :e, "
        "next_attempt_at = now() + make_interval(secs => :in_s) "
        "WHERE subscription_id = :s AND outbox_id = :o"),
        {"s": subscription_id, "o": outbox_id, "e": error[:500], "in_s": retry_in_s})


def next_pending_at(conn: Connection) -> datetime | None:
    """When the next pending delivery of an active receiver falls due, or None."""
    return conn.execute(sa.text(
        "SELECT min(d.next_attempt_at) FROM webhook_deliveries d "
        "JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active "
        "WHERE d.status = 'pending'")).scalar()


def add_subscription(conn: Connection, *, url: str, secret: str, description: str | None,
                     created_by: str) -> dict:
    """A new receiver of every change from now on."""
    row = conn.execute(sa.text(
        "INSERT INTO webhook_subscriptions (url, secret, description, created_by) "
        "VALUES (:url, :secret, :d, :by) RETURNING id, url, description, active, created_at"),
        {"url": url, "secret": secret, "d": description, "by": created_by}).mappings().one()
    return dict(row)


def subscriptions(conn: Connection) -> list[dict]:
    """Every receiver with its counts of pending and delivered changes (no secrets)."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT s.id, s.url, s.description, s.active, s.created_at, "
        "count(*) FILTER (WHERE d.status = 'pending') AS pending, "
        "count(*) FILTER (WHERE d.status = 'delivered') AS delivered, "
        "max(d.last_error) FILTER (WHERE d.status = 'pending') AS last_error "
        "FROM webhook_subscriptions s LEFT JOIN webhook_deliveries d ON d.subscription_id = s.id "
        "GROUP BY s.id ORDER BY s.id")).mappings()]


def deactivate(conn: Connection, subscription_id: int) -> None:
    """Stop delivering to a receiver (its pending deliveries wait, should it come back)."""
    done = conn.execute(sa.text(
        "UPDATE webhook_subscriptions SET active = false WHERE id = :id"),
        {"id": subscription_id}).rowcount
    if not done:
        raise NotFound(_("There is no webhook subscription {id}.", id=subscription_id))


def outbox_of(conn: Connection, request_id: int) -> list[dict]:
    """A request's changes as receivers get them, oldest first."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT id, kind, payload, created_at FROM request_outbox WHERE request_id = :r "
        "ORDER BY id"), {"r": request_id}).mappings()]


def payload_json(payload: dict) -> str:
    """The body sent for a payload: compact, keys sorted (what the signature covers)."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
