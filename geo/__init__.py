"""Storage of the twin: settings, the embedded PostGIS cluster, migrations and all its SQL."""

STORAGE_SRID = 4326
