"""photos.source as long as the vector index allows (512); the gallery's indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The gallery pages newest first under a filter (``WHERE status = ? ORDER BY id
DESC LIMIT n``, the same by source or origin): a (filter, id) index serves
the filter and the order together, so a page reads only its own rows.

On PostgreSQL widening a VARCHAR is a catalog-only change. SQLite cannot
alter a column: the table is rebuilt in batch mode (AUTOINCREMENT kept, and
the id high-water mark carried over so a deleted photo's id is never reused).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_photos_status_id", ["status", "id"]),
    ("ix_photos_source_id", ["source", "id"]),
    ("ix_photos_origin_id", ["origin", "id"]),
]


def _set_source_length(length: int, was: int) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.alter_column(
            "photos",
            "source",
            type_=sa.String(length),
            existing_type=sa.String(was),
            existing_nullable=False,
        )
        return
    has_seq = bind.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    ).scalar()
    seq = None
    if has_seq:
        seq = bind.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = 'photos'").scalar()
    with op.batch_alter_table(
        "photos", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.alter_column(
            "source", type_=sa.String(length), existing_type=sa.String(was), existing_nullable=False
        )
    if seq is not None:
        # The rebuilt table's counter starts from its largest id; keep the old high-water mark.
        done = bind.exec_driver_sql(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'photos'", (int(seq),)
        ).rowcount
        if not done:
            bind.exec_driver_sql(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('photos', ?)", (int(seq),)
            )


def upgrade() -> None:
    _set_source_length(512, 200)
    # Only the missing ones: a catalog made by create_all of newer models, with no
    # alembic_version, has them already (it is upgraded from the start).
    existing = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("photos")}
    for name, columns in INDEXES:
        if name not in existing:
            op.create_index(name, "photos", columns)


def downgrade() -> None:
    for name, _ in reversed(INDEXES):
        op.drop_index(name, table_name="photos")
    _set_source_length(200, 512)
