"""The catalog as it was before migrations: photos, analyses, faces, people, packs, runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Catalogs made before the workbench used Alembic (``create_all``, no
``alembic_version`` table) are brought here by the same upgrade: every table
and index is created only when missing, so an old catalog gains what newer
code had added (e.g. the ``analyses`` table) and keeps its rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
AUTOINC = {"sqlite_autoincrement": True}


def _tables() -> list[tuple[str, list[sa.SchemaItem], dict[str, object]]]:
    """(name, columns and constraints, table kwargs) in dependency order."""
    return [
        (
            "packs",
            [
                sa.Column("name", sa.String(200), primary_key=True),
                sa.Column("embedding_dim", sa.Integer, nullable=False),
                sa.Column("collection", sa.String(255), nullable=False),
                sa.Column("created_at", TZ, nullable=False),
            ],
            {},
        ),
        (
            "runs",
            [
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("kind", sa.String(40), nullable=False),
                sa.Column("pack", sa.String(200), nullable=False),
                sa.Column("sources", sa.JSON, nullable=False),
                sa.Column("started_at", TZ, nullable=False),
                sa.Column("finished_at", TZ, nullable=True),
                sa.Column("status", sa.String(20), nullable=False),
                sa.Column("counts", sa.JSON, nullable=False),
            ],
            AUTOINC,
        ),
        (
            "photos",
            [
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("sha256", sa.String(64), nullable=True),
                sa.Column("source", sa.String(200), nullable=False),
                sa.Column("origin", sa.String(40), nullable=False),
                sa.Column("uri", sa.Text, nullable=False),
                sa.Column("size_bytes", sa.Integer, nullable=True),
                sa.Column("width", sa.Integer, nullable=True),
                sa.Column("height", sa.Integer, nullable=True),
                sa.Column("format", sa.String(20), nullable=True),
                sa.Column("status", sa.String(20), nullable=False),
                sa.Column("error", sa.Text, nullable=True),
                sa.Column("pack", sa.String(200), nullable=True),
                sa.Column("n_faces", sa.Integer, nullable=False),
                sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=True),
                sa.Column("metadata", sa.JSON, nullable=False),
                sa.Column("created_at", TZ, nullable=False),
                sa.Column("updated_at", TZ, nullable=False),
                sa.UniqueConstraint("sha256"),
            ],
            AUTOINC,
        ),
        (
            "analyses",
            [
                sa.Column(
                    "photo_id",
                    sa.Integer,
                    sa.ForeignKey("photos.id", ondelete="CASCADE"),
                    primary_key=True,
                ),
                sa.Column("pack", sa.String(200), primary_key=True),
                sa.Column("n_faces", sa.Integer, nullable=False),
                sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=True),
                sa.Column("analysed_at", TZ, nullable=False),
            ],
            {},
        ),
        (
            "faces",
            [
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column(
                    "photo_id",
                    sa.Integer,
                    sa.ForeignKey("photos.id", ondelete="CASCADE"),
                    nullable=False,
                ),
                sa.Column("pack", sa.String(200), nullable=False),
                sa.Column("x1", sa.Float, nullable=False),
                sa.Column("y1", sa.Float, nullable=False),
                sa.Column("x2", sa.Float, nullable=False),
                sa.Column("y2", sa.Float, nullable=False),
                sa.Column("landmarks", sa.JSON, nullable=False),
                sa.Column("score", sa.Float, nullable=False),
                sa.Column("embedding", sa.LargeBinary, nullable=False),
                sa.Column("indexed", sa.Boolean, nullable=False),
                sa.Column("created_at", TZ, nullable=False),
            ],
            AUTOINC,
        ),
        (
            "people",
            [
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("pack", sa.String(200), nullable=False),
                sa.Column("name", sa.String(300), nullable=True),
                sa.Column("hidden", sa.Boolean, nullable=False),
                sa.Column("confirmed", sa.Boolean, nullable=False),
                sa.Column("created_at", TZ, nullable=False),
                sa.Column("updated_at", TZ, nullable=False),
            ],
            AUTOINC,
        ),
        (
            "face_people",
            [
                sa.Column(
                    "face_id",
                    sa.Integer,
                    sa.ForeignKey("faces.id", ondelete="CASCADE"),
                    primary_key=True,
                ),
                sa.Column("pack", sa.String(200), nullable=False),
                sa.Column("cluster", sa.Integer, nullable=False),
                sa.Column(
                    "person_id",
                    sa.Integer,
                    sa.ForeignKey("people.id", ondelete="SET NULL"),
                    nullable=True,
                ),
                sa.Column("confirmed", sa.Boolean, nullable=False),
                sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=True),
            ],
            {},
        ),
        (
            "face_rejections",
            [
                sa.Column(
                    "face_id",
                    sa.Integer,
                    sa.ForeignKey("faces.id", ondelete="CASCADE"),
                    primary_key=True,
                ),
                sa.Column(
                    "person_id",
                    sa.Integer,
                    sa.ForeignKey("people.id", ondelete="CASCADE"),
                    primary_key=True,
                ),
                sa.Column("created_at", TZ, nullable=False),
            ],
            {},
        ),
    ]


INDEXES: list[tuple[str, str, list[str]]] = [
    ("ix_photos_source_status", "photos", ["source", "status"]),
    ("ix_photos_uri", "photos", ["uri"]),
    ("ix_analyses_pack", "analyses", ["pack"]),
    ("ix_faces_pack_indexed", "faces", ["pack", "indexed"]),
    ("ix_faces_photo_id", "faces", ["photo_id"]),
    ("ix_people_pack", "people", ["pack"]),
    ("ix_face_people_pack", "face_people", ["pack"]),
    ("ix_face_people_person_id", "face_people", ["person_id"]),
]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, items, kwargs in _tables():
        if name not in existing:
            op.create_table(name, *items, **kwargs)
    for name, table, columns in INDEXES:
        if name not in {ix["name"] for ix in inspector.get_indexes(table)}:
            op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    for name, _, _ in reversed(_tables()):
        op.drop_table(name)
