"""Which process runs a run: ``runs.host`` and ``runs.pid``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

A run whose process died (``kill -9``, a power cut) stayed ``running`` for good;
with its host and pid recorded, the next run on that host sees the process is
gone and marks it ``interrupted``. Adding nullable columns is in place on both
SQLite and PostgreSQL; older runs keep NULLs (nothing is known of them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("runs")}
    # A catalog made by create_all of the newer models has them already.
    if "host" not in columns:
        op.add_column("runs", sa.Column("host", sa.String(255), nullable=True))
    if "pid" not in columns:
        op.add_column("runs", sa.Column("pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("pid")
        batch.drop_column("host")
