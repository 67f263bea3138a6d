"""The verdict store's tables (SQLAlchemy Core). Migrations create them; this module mirrors
the head revision for queries, and a test checks the two agree (alembic autogenerate diff).

Every table's primary key is an insertion sequence: keyset pagination walks it, so rows
inserted while a client pages never shift a page (they land above the first page).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
Seq = BigInteger().with_variant(Integer(), "sqlite")

verdicts = Table(
    "verdicts",
    metadata,
    Column("pk", Seq, primary_key=True, autoincrement=True),
    # Where the verdict message was read: a redelivered message is the same row (idempotent).
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("item_id", String(128), nullable=False),
    Column("tenant", String(255)),
    Column("model_id", String(128), nullable=False),
    Column("model_version", String(255), nullable=False),
    Column("score", Float, nullable=False),
    Column("label", String(16), nullable=False),
    Column("threshold", Float),
    Column("operating_point", String(64)),
    Column("confidence", String(16)),
    Column("revises", JSON),
    Column("text_sha256", String(64)),
    Column("text_length", Integer),
    Column("backend", String(16)),
    Column("fallback_from", JSON),
    Column("attempts", Integer),
    Column("replay", Boolean, nullable=False, default=False),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    Column("inserted_at", DateTime(timezone=True), nullable=False),
    # The whole verdict as published: fields added to the schema later are never lost.
    Column("body", JSON, nullable=False),
    UniqueConstraint("topic", "partition", "offset", name="uq_verdicts_source"),
)
Index("ix_verdicts_item", verdicts.c.item_id, verdicts.c.pk)
Index("ix_verdicts_tenant_pk", verdicts.c.tenant, verdicts.c.pk)
Index("ix_verdicts_scored_at", verdicts.c.scored_at)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("pk", Seq, primary_key=True, autoincrement=True),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("item_id", String(128)),
    Column("tenant", String(255)),
    Column("reason", String(64)),
    Column("stage", String(32)),
    Column("error_class", String(255)),
    Column("error_message", Text),
    Column("original_topic", String(255)),
    Column("original_partition", Integer),
    Column("original_offset", BigInteger),
    Column("attempts", Integer),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    # Never the value itself (it may hold the text): its digest and size.
    Column("value_sha256", String(64), nullable=False),
    Column("value_length", Integer, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("inserted_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_source"),
)
Index("ix_dead_letters_item", dead_letters.c.item_id, dead_letters.c.pk)
Index("ix_dead_letters_failed_at", dead_letters.c.failed_at)

audit_log = Table(
    "audit_log",
    metadata,
    Column("pk", Seq, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("request_id", String(128)),
    Column("key_id", String(32)),
    Column("tenant", String(255)),
    Column("method", String(16), nullable=False),
    Column("endpoint", String(512), nullable=False),
    Column("status", Integer, nullable=False),
    Column("model_id", String(255)),
    Column("verdict_ids", JSON),
    Column("texts", JSON),
    Column("client", String(128)),
    Column("duration_ms", Float),
)
Index("ix_audit_log_at", audit_log.c.at)
Index("ix_audit_log_tenant_pk", audit_log.c.tenant, audit_log.c.pk)
