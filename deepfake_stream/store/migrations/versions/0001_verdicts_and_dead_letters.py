"""Verdicts and dead letters.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "verdicts",
        sa.Column("pk", SEQ, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(255)),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(255), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("threshold", sa.Float),
        sa.Column("operating_point", sa.String(64)),
        sa.Column("confidence", sa.String(16)),
        sa.Column("revises", sa.JSON),
        sa.Column("text_sha256", sa.String(64)),
        sa.Column("text_length", sa.Integer),
        sa.Column("backend", sa.String(16)),
        sa.Column("fallback_from", sa.JSON),
        sa.Column("attempts", sa.Integer),
        sa.Column("replay", sa.Boolean, nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_verdicts_source"),
    )
    op.create_index("ix_verdicts_item", "verdicts", ["item_id", "pk"])
    op.create_index("ix_verdicts_tenant_pk", "verdicts", ["tenant", "pk"])
    op.create_index("ix_verdicts_scored_at", "verdicts", ["scored_at"])
    op.create_table(
        "dead_letters",
        sa.Column("pk", SEQ, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("item_id", sa.String(128)),
        sa.Column("tenant", sa.String(255)),
        sa.Column("reason", sa.String(64)),
        sa.Column("stage", sa.String(32)),
        sa.Column("error_class", sa.String(255)),
        sa.Column("error_message", sa.Text),
        sa.Column("original_topic", sa.String(255)),
        sa.Column("original_partition", sa.Integer),
        sa.Column("original_offset", sa.BigInteger),
        sa.Column("attempts", sa.Integer),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value_sha256", sa.String(64), nullable=False),
        sa.Column("value_length", sa.Integer, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_source"),
    )
    op.create_index("ix_dead_letters_item", "dead_letters", ["item_id", "pk"])
    op.create_index("ix_dead_letters_failed_at", "dead_letters", ["failed_at"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("verdicts")
