"""Read, validate and load layers and readings into the twin's PostGIS database."""
