"""Storage of the twin: settings, the embedded PostGIS cluster, migrations and every SQL statement."""

STORAGE_SRID = 4326
