"""Residents' requests as a domain: catalogue, triage, routing, SLA and workflow.

Apart from HTTP (``service/routers/open311.py``, ``report.py``, ``intake.py``, ``council.py``
parse and answer) and from SQL (``geo/requests.py``, ``geo/outbox.py`` hold every statement).
Every way in (Open311, the residents' ``/report`` page, chat-group intake) goes through
:func:`civic.workflow.submit`, so triage, routing, duplicates and the outbox are the same.
"""
