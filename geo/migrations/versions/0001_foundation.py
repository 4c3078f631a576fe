"""Foundation: asset and observation layers, metrics, partitioned readings, ingest runs.

Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from geo.migrations import ddl

revision = "0001"
down_revision = None

# Declared with the schema so readings of these metrics can land from the first run
# (ranges and thresholds from the domain notes; NULL direction: neither higher nor lower is better).
METRICS = [
    ("pci", "PCI", 0, 100, True, "Pavement condition index (ASTM D6433)"),
    ("iri_m_per_km", "m/km", 0, 20, False, "International roughness index"),
    ("tilt_deg", "deg", 0, 90, False, "Manhole cover tilt from its installed baseline"),
    ("cover_open", "bool", 0, 1, False, "Manhole cover open (magnet switch): 1 open, 0 closed"),
    ("water_level_pct", "%", 0, 100, False, "Water level as a share of the well's depth"),
    ("o2_pct", "%", 0, 25, None, "Oxygen in the well; safe between 19.5 and 23.5"),
    ("lel_pct", "%LEL", 0, 100, False, "Flammable gas as a share of the lower explosive limit"),
    ("co_ppm", "ppm", 0, 1000, False, "Carbon monoxide in the well"),
    ("h2s_ppm", "ppm", 0, 200, False, "Hydrogen sulphide in the well"),
    ("battery_pct", "%", 0, 100, True, "Sensor battery charge"),
    ("occupancy_pct", "%", 0, 100, None, "Share of a parking lot's spaces in use"),
]

ASSET_LAYERS = {
    "streets": "LINESTRING",
    "manholes": "POINT",
    "parking": "GEOMETRY",
    "compounds": "POLYGON",
}


def _feature_columns(id_column: sa.Column, geometry_type: str, *extra: sa.Column) -> list:
    """Columns every asset and observation has: key, source identity, properties, geometry."""
    return [
        id_column,
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text, nullable=False),
        *extra,
        *ddl.feature_columns(geometry_type),
    ]


def _asset_columns(geometry_type: str) -> list:
    # One sequence for all asset tables, so a reading's asset_id names one asset in the twin.
    return _feature_columns(ddl.asset_key(), geometry_type)


def _observation_columns(geometry_type: str) -> list:
    return _feature_columns(
        ddl.identity_key(),
        geometry_type,
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False, server_default="1.0"),
    )


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE SEQUENCE asset_id_seq AS bigint")

    op.create_table(
        "streets",
        *_asset_columns(ASSET_LAYERS["streets"]),
        sa.Column("name", sa.Text),
        sa.Column("road_class", sa.Text, nullable=False),
        sa.Column("surface", sa.Text),
        sa.Column("width_m", sa.Float),
        sa.Column("lanes", sa.SmallInteger),
        sa.Column("resurfaced_on", sa.Date),
        sa.CheckConstraint("width_m IS NULL OR width_m > 0", name="ck_streets_width_positive"),
        sa.CheckConstraint("lanes IS NULL OR lanes > 0", name="ck_streets_lanes_positive"),
    )
    op.create_table(
        "manholes",
        *_asset_columns(ASSET_LAYERS["manholes"]),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("depth_m", sa.Float),
        sa.Column("cover_state", sa.Text, nullable=False, server_default="ok"),
        sa.Column("sensor_id", sa.Text),
        sa.CheckConstraint(
            "kind IN ('sewer', 'storm', 'water', 'power', 'telecom', 'gas')",
            name="ck_manholes_kind",
        ),
        sa.CheckConstraint(
            "cover_state IN ('ok', 'damaged', 'missing', 'open')", name="ck_manholes_cover_state"
        ),
        sa.CheckConstraint("depth_m IS NULL OR depth_m > 0", name="ck_manholes_depth_positive"),
    )
    op.create_table(
        "parking",
        *_asset_columns(ASSET_LAYERS["parking"]),
        sa.Column("name", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("capacity", sa.Integer),
        sa.CheckConstraint("kind IN ('lot', 'on_street')", name="ck_parking_kind"),
        sa.CheckConstraint("capacity IS NULL OR capacity >= 0", name="ck_parking_capacity"),
        sa.CheckConstraint(
            "GeometryType(geom) IN ('POINT', 'POLYGON', 'MULTIPOLYGON')",
            name="ck_parking_geometry_type",
        ),
    )
    op.create_table(
        "compounds",
        *_asset_columns(ASSET_LAYERS["compounds"]),
        sa.Column("name", sa.Text),
        sa.Column("management_type", sa.Text, nullable=False),
        sa.Column("households", sa.Integer),
        sa.Column("built_year", sa.SmallInteger),
        sa.CheckConstraint(
            "management_type IN ('commodity', 'resettlement', 'old', 'unmanaged')",
            name="ck_compounds_management_type",
        ),
    )
    for table in ASSET_LAYERS:
        op.create_unique_constraint(
            f"uq_{table}_source_external_id", table, ["source", "external_id"]
        )
        ddl.gist_index(table)

    op.create_table(
        "road_damage",
        *_observation_columns("POINT"),
        sa.Column("damage_class", sa.Text, nullable=False),
        sa.Column("severity", sa.Text),
        sa.Column("size_m2", sa.Float),
        sa.Column("street_id", sa.BigInteger, sa.ForeignKey("streets.id", ondelete="SET NULL")),
        sa.CheckConstraint(
            "damage_class IN ('D00', 'D10', 'D20', 'D40')", name="ck_road_damage_class"
        ),
        sa.CheckConstraint("severity IN ('low', 'medium', 'high')", name="ck_road_damage_severity"),
    )
    op.create_table(
        "debris_piles",
        *_observation_columns("GEOMETRY"),
        sa.Column("pile_ref", sa.Text),
        sa.Column("volume_m3", sa.Float),
        sa.Column("material", sa.Text),
        sa.CheckConstraint("volume_m3 IS NULL OR volume_m3 >= 0", name="ck_debris_volume"),
        sa.CheckConstraint(
            "GeometryType(geom) IN ('POINT', 'POLYGON', 'MULTIPOLYGON')",
            name="ck_debris_piles_geometry_type",
        ),
    )
    for table in ("road_damage", "debris_piles"):
        op.create_unique_constraint(
            f"uq_{table}_source_external_id", table, ["source", "external_id"]
        )
        ddl.gist_index(table)
        op.create_index(f"ix_{table}_observed_at", table, ["observed_at"])
    op.create_index("ix_road_damage_street_id", "road_damage", ["street_id"])
    op.create_index("ix_debris_piles_pile_ref", "debris_piles", ["pile_ref"])

    # Every asset of every layer, for readings and look-ups by (layer, source, external_id).
    op.execute(
        "CREATE VIEW assets AS "
        + " UNION ALL ".join(
            f"SELECT id, '{table}'::text AS layer, source, external_id FROM {table}"
            for table in ASSET_LAYERS
        )
    )

    metrics = op.create_table(
        "metrics",
        ddl.identity_key(sa.SmallInteger),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("min_value", sa.Float, nullable=False),
        sa.Column("max_value", sa.Float, nullable=False),
        sa.Column("higher_is_better", sa.Boolean),
        sa.Column("description", sa.Text),
        sa.CheckConstraint("min_value < max_value", name="ck_metrics_range"),
    )
    op.bulk_insert(
        metrics,
        [
            dict(name=n, unit=u, min_value=lo, max_value=hi, higher_is_better=hb, description=d)
            for n, u, lo, hi, hb, d in METRICS
        ],
    )

    # Tens of millions of rows: range partitions by month (created by the loader as data
    # arrives), so time windows prune to a few partitions and old months can be detached.
    # The key (metric, asset, time) serves "latest value of a metric per asset as of T" and
    # a single asset's history; BRIN serves scans of recent windows across assets.
    op.create_table(
        "readings",
        # No foreign key to metrics: checking it row by row cost a third of a bulk load's
        # time, and every writer resolves metric ids against metrics (locked) already.
        sa.Column("metric_id", sa.SmallInteger, nullable=False),
        sa.Column("asset_id", sa.BigInteger, nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("metric_id", "asset_id", "observed_at", name="pk_readings"),
        postgresql_partition_by="RANGE (observed_at)",
    )
    op.create_index("ix_readings_observed_at", "readings", ["observed_at"], postgresql_using="brin")

    op.create_table(
        "ingest_runs",
        ddl.identity_key(),
        sa.Column("layer", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("checksum_sha256", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        ddl.stamp("started_at"),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("rows_read", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_new", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_updated", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_unchanged", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("message", sa.Text),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')", name="ck_ingest_runs_status"
        ),
    )
    op.create_index("ix_ingest_runs_checksum", "ingest_runs", ["checksum_sha256"])


def downgrade() -> None:
    op.drop_table("ingest_runs")
    op.drop_table("readings")  # drops its partitions with it
    op.drop_table("metrics")
    op.execute("DROP VIEW assets")
    op.drop_table("debris_piles")
    op.drop_table("road_damage")
    for table in reversed(list(ASSET_LAYERS)):
        op.drop_table(table)
    op.execute("DROP SEQUENCE asset_id_seq")
