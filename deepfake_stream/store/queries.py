"""Reading the store: an item's history, keyset pages, stats, the audit log, export, prune.

Every read takes ``tenant``: None means every tenant (an unbound key), a string means only
that tenant's rows (a tenant-bound key; enforced here, not by the caller's care).
Pages walk the insertion sequence (``pk``) newest first; a cursor is the last ``pk`` seen,
so rows inserted while a client pages land above the first page and never shift a page.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Table, and_, delete, func, select, true
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from deepfake_stream.store.schema import audit_log, dead_letters, verdicts

Bucket = Literal["hour", "day"]


class BadCursor(ValueError):
    pass


def encode_cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, pk = raw.split(":", 1)
        if version != "v1":
            raise ValueError(version)
        return int(pk)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("malformed cursor; pass next_cursor back unchanged") from exc


def utc(value: datetime | None) -> datetime | None:
    """Aware UTC (SQLite returns naive datetimes; every stored time is UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    v = utc(value)
    return v.isoformat(timespec="milliseconds").replace("+00:00", "Z") if v else None


def _where(table: Table, tenant: str | None, **equal: Any) -> list[ColumnElement[bool]]:
    clauses = [table.c[name] == value for name, value in equal.items() if value is not None]
    if tenant is not None:
        clauses.append(table.c.tenant == tenant)
    return clauses


def _time_range(
    column: Any, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    out = []
    if since is not None:
        out.append(column >= utc(since))
    if until is not None:
        out.append(column < utc(until))
    return out


def _dead_letter_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.item_id,
        "tenant": row.tenant,
        "reason": row.reason,
        "stage": row.stage,
        "error_class": row.error_class,
        "error_message": row.error_message,
        "original": {
            "topic": row.original_topic,
            "partition": row.original_partition,
            "offset": row.original_offset,
        },
        "attempts": row.attempts,
        "failed_at": iso(row.failed_at),
        "value_sha256": row.value_sha256,
        "value_length": row.value_length,
        "headers": row.headers,
    }


async def history(engine: AsyncEngine, item_id: str, tenant: str | None) -> list[dict[str, Any]]:
    """Every verdict and dead letter of ``item_id``, newest first."""
    async with engine.connect() as conn:
        vs = (
            await conn.execute(
                select(verdicts.c.pk, verdicts.c.scored_at, verdicts.c.body).where(
                    *_where(verdicts, tenant, item_id=item_id)
                )
            )
        ).all()
        ds = (
            await conn.execute(
                select(dead_letters).where(*_where(dead_letters, tenant, item_id=item_id))
            )
        ).all()
    entries = [(utc(v.scored_at), 1, v.pk, {"kind": "verdict", "verdict": v.body}) for v in vs]
    entries += [
        (utc(d.failed_at), 0, d.pk, {"kind": "dead_letter", "dead_letter": _dead_letter_view(d)})
        for d in ds
    ]
    entries.sort(key=lambda e: (e[0], e[1], e[2]), reverse=True)
    return [e[3] for e in entries]


@dataclass(frozen=True, kw_only=True)
class VerdictFilter:
    tenant: str | None = None
    label: str | None = None
    model_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def page_verdicts(
    engine: AsyncEngine, where: VerdictFilter, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first, and the cursor of the next (None after the last)."""
    clauses = _where(verdicts, where.tenant, label=where.label, model_id=where.model_id)
    clauses += _time_range(verdicts.c.scored_at, where.since, where.until)
    if cursor:
        clauses.append(verdicts.c.pk < decode_cursor(cursor))
    query = (
        select(verdicts.c.pk, verdicts.c.body)
        .where(and_(true(), *clauses))
        .order_by(verdicts.c.pk.desc())
        .limit(limit + 1)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [r.body for r in rows], encode_cursor(rows[-1].pk) if more else None


def _bucket(engine: AsyncEngine, column: Any, bucket: Bucket) -> Any:
    if engine.dialect.name == "postgresql":
        return func.date_trunc(bucket, func.timezone("UTC", column))
    fmt = "%Y-%m-%dT%H:00:00Z" if bucket == "hour" else "%Y-%m-%dT00:00:00Z"
    return func.strftime(fmt, column)


def _bucket_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


async def stats(
    engine: AsyncEngine,
    *,
    tenant: str | None,
    since: datetime | None,
    until: datetime | None,
    bucket: Bucket,
) -> list[dict[str, Any]]:
    """Counts per bucket by model, label and outcome (``scored``, or ``dead_letter`` with
    its reason), oldest bucket first."""
    vb = _bucket(engine, verdicts.c.scored_at, bucket).label("b")
    v_query = (
        select(vb, verdicts.c.model_id, verdicts.c.label, func.count().label("n"))
        .where(and_(true(), *_where(verdicts, tenant)))
        .where(*_time_range(verdicts.c.scored_at, since, until))
        .group_by(vb, verdicts.c.model_id, verdicts.c.label)
    )
    db = _bucket(engine, dead_letters.c.failed_at, bucket).label("b")
    d_query = (
        select(db, dead_letters.c.reason, func.count().label("n"))
        .where(and_(true(), *_where(dead_letters, tenant)))
        .where(*_time_range(dead_letters.c.failed_at, since, until))
        .group_by(db, dead_letters.c.reason)
    )
    async with engine.connect() as conn:
        v_rows = (await conn.execute(v_query)).all()
        d_rows = (await conn.execute(d_query)).all()
    out = [
        {
            "bucket": _bucket_text(r.b),
            "model_id": r.model_id,
            "label": r.label,
            "outcome": "scored",
            "reason": None,
            "count": r.n,
        }
        for r in v_rows
    ]
    out += [
        {
            "bucket": _bucket_text(r.b),
            "model_id": None,
            "label": None,
            "outcome": "dead_letter",
            "reason": r.reason,
            "count": r.n,
        }
        for r in d_rows
    ]
    out.sort(key=lambda r: (r["bucket"], r["outcome"], r["model_id"] or "", r["label"] or ""))
    return out


async def page_audit(
    engine: AsyncEngine,
    *,
    tenant: str | None,
    key_id: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    clauses = _where(audit_log, tenant, key_id=key_id)
    clauses += _time_range(audit_log.c.at, since, until)
    if cursor:
        clauses.append(audit_log.c.pk < decode_cursor(cursor))
    query = (
        select(audit_log)
        .where(and_(true(), *clauses))
        .order_by(audit_log.c.pk.desc())
        .limit(limit + 1)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [
        {
            "at": iso(r.at),
            "request_id": r.request_id,
            "key_id": r.key_id,
            "tenant": r.tenant,
            "method": r.method,
            "endpoint": r.endpoint,
            "status": r.status,
            "model_id": r.model_id,
            "verdict_ids": r.verdict_ids,
            "texts": r.texts,
            "client": r.client,
            "duration_ms": r.duration_ms,
        }
        for r in rows
    ]
    return entries, encode_cursor(rows[-1].pk) if more else None


async def count_verdicts(engine: AsyncEngine, where: VerdictFilter) -> int:
    clauses = _where(verdicts, where.tenant, label=where.label, model_id=where.model_id)
    clauses += _time_range(verdicts.c.scored_at, where.since, where.until)
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count()).select_from(verdicts).where(and_(true(), *clauses))
                )
            ).scalar()
            or 0
        )


async def export_verdicts(
    engine: AsyncEngine, where: VerdictFilter, *, chunk: int = 1000
) -> AsyncIterator[dict[str, Any]]:
    """Every matching verdict, oldest insertion first, read in keyset chunks (bounded memory)."""
    clauses = _where(verdicts, where.tenant, label=where.label, model_id=where.model_id)
    clauses += _time_range(verdicts.c.scored_at, where.since, where.until)
    after = 0
    while True:
        query = (
            select(verdicts.c.pk, verdicts.c.body)
            .where(and_(verdicts.c.pk > after, *clauses))
            .order_by(verdicts.c.pk)
            .limit(chunk)
        )
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        for r in rows:
            yield r.body
        if len(rows) < chunk:
            return
        after = rows[-1].pk


async def prune(
    engine: AsyncEngine,
    *,
    verdict_days: float,
    audit_days: float,
    now: datetime | None = None,
) -> dict[str, int]:
    """Delete rows past their retention (0 days: keep forever); returns rows deleted."""
    now = now or datetime.now(UTC)
    deleted = {"verdicts": 0, "dead_letters": 0, "audit_log": 0}
    plan = [
        ("verdicts", verdicts.c.scored_at, verdict_days),
        ("dead_letters", dead_letters.c.failed_at, verdict_days),
        ("audit_log", audit_log.c.at, audit_days),
    ]
    async with engine.begin() as conn:
        for name, column, days in plan:
            if days <= 0:
                continue
            cutoff = now - timedelta(days=days)
            result = await conn.execute(delete(column.table).where(column < cutoff))
            deleted[name] = max(result.rowcount or 0, 0)
    return deleted
