"""Audit log of shim requests.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("pk", SEQ, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("key_id", sa.String(32)),
        sa.Column("tenant", sa.String(255)),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(512), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("model_id", sa.String(255)),
        sa.Column("verdict_ids", sa.JSON),
        sa.Column("texts", sa.JSON),
        sa.Column("client", sa.String(128)),
        sa.Column("duration_ms", sa.Float),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_tenant_pk", "audit_log", ["tenant", "pk"])


def downgrade() -> None:
    op.drop_table("audit_log")
