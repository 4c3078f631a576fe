"""Storage of the twin: settings, the embedded PostGIS cluster, migrations and all its SQL."""

STORAGE_SRID = 4326
# Degrees per metre, an upper bound: a distance test in metres first prefilters in degrees
# (1 degree >= ~50 km anywhere a town lies below 60 degrees of latitude), so the GiST index
# on geom does the work before the exact test on geography.
DEG_PER_M_BOUND = 1 / 50_000
