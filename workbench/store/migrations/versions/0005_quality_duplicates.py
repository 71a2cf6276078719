"""Face quality and near-duplicate photos: ``faces.size|sharpness|yaw|pitch|roll`` and
``photos.phash|duplicate_of``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Nullable columns, added in place on SQLite and PostgreSQL. Faces stored before
get their quality from ``workbench quality`` (or when ``embed`` re-analyses their
photo); photos stored before have no hash and are never called duplicates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FACE_COLUMNS = ("size", "sharpness", "yaw", "pitch", "roll")


def upgrade() -> None:
    inspect = sa.inspect(op.get_bind())
    faces = {c["name"] for c in inspect.get_columns("faces")}
    photos = {c["name"] for c in inspect.get_columns("photos")}
    # A catalog made by create_all of the newer models has them already.
    for name in FACE_COLUMNS:
        if name not in faces:
            op.add_column("faces", sa.Column(name, sa.Float(), nullable=True))
    if "phash" not in photos:
        op.add_column("photos", sa.Column("phash", sa.String(64), nullable=True))
    if "duplicate_of" not in photos:
        if op.get_bind().dialect.name == "sqlite":
            # In place: SQLite adds a NULL-defaulted column with its reference, where batch
            # mode would rebuild the whole photos table.
            op.execute("ALTER TABLE photos ADD COLUMN duplicate_of INTEGER REFERENCES photos (id)")
        else:
            op.add_column("photos", sa.Column("duplicate_of", sa.Integer(), nullable=True))
            op.create_foreign_key(None, "photos", "photos", ["duplicate_of"], ["id"])
    if "ix_photos_duplicate_of" not in {ix["name"] for ix in inspect.get_indexes("photos")}:
        op.create_index("ix_photos_duplicate_of", "photos", ["duplicate_of"])


def downgrade() -> None:
    op.drop_index("ix_photos_duplicate_of", table_name="photos")
    with op.batch_alter_table("photos", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("duplicate_of")
        batch.drop_column("phash")
    with op.batch_alter_table("faces") as batch:
        for name in reversed(FACE_COLUMNS):
            batch.drop_column(name)
