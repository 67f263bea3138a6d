"""The verdict store's read API on the shim (API key required):

- ``GET /v1/verdicts/{id}``: the item's verdicts and dead letters, newest first;
- ``GET /v1/verdicts``: keyset pages, newest first (``next_cursor`` until the last page);
- ``GET /v1/stats``: counts per hour or day by model, label and outcome;
- ``GET /v1/audit``: the audit log, admin keys only.

A tenant-bound key sees only its tenant's rows; asking for another tenant is 403.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from deepfake_stream.core.settings import Settings
from deepfake_stream.shim.audit import note
from deepfake_stream.shim.auth import OPEN, Principal
from deepfake_stream.shim.errors import ApiError
from deepfake_stream.store import queries
from deepfake_stream.store.audit import AuditWriter
from deepfake_stream.store.db import make_engine, redacted_url, upgrade_with_retry

log = logging.getLogger("deepfake_stream.shim")
MAX_PAGE = 1000


@dataclass(kw_only=True)
class StoreLink:
    """The shim's connection to the verdict store, made in the background (the detect
    endpoints never wait for it); the history endpoints answer 503 until it is ready."""

    settings: Settings
    audit: AuditWriter
    engine: AsyncEngine | None = None
    ready: bool = False
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect(), name="shim-store")

    async def _connect(self) -> None:
        self.engine = make_engine(self.settings)
        await upgrade_with_retry(self.engine, self.settings)
        self.ready = True
        self.audit.start(self.engine)
        log.info("shim reads the verdict store at %s", redacted_url(self.settings))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.audit.stop()
        if self.engine is not None:
            await self.engine.dispose()


def principal(request: Request) -> Principal:
    return getattr(request.state, "principal", None) or OPEN


def tenant_scope(request: Request, asked: str | None) -> str | None:
    """The tenant a read is limited to: a bound key's own, whatever it asks for."""
    bound = principal(request).tenant
    if bound is None:
        return asked
    if asked is not None and asked != bound:
        raise ApiError(403, "forbidden_tenant", "this API key is bound to another tenant")
    return bound


def _checked(**values: Any) -> None:
    """422 for what no database can hold: NUL in a string, a time out of range in UTC."""
    for name, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            raise ApiError(422, "invalid_request", f"{name} contains a NUL character")
        if isinstance(value, datetime):
            try:
                queries.utc(value)
            except OverflowError as exc:
                raise ApiError(422, "invalid_request", f"{name} is out of range") from exc


def _engine(request: Request) -> AsyncEngine:
    store: StoreLink = request.app.state.shim.store
    if not store.ready or store.engine is None:
        raise ApiError(503, "store_unavailable", "the verdict store is not reachable yet")
    return store.engine


async def _guarded(call: Any) -> Any:
    try:
        return await call
    except queries.BadCursor as exc:
        raise ApiError(422, "invalid_cursor", str(exc)) from exc
    except ApiError:
        raise
    except Exception as exc:  # the database went away mid-request
        log.warning("verdict store query failed (%s)", type(exc).__name__)
        raise ApiError(503, "store_unavailable", "the verdict store did not answer") from exc


Since = Annotated[datetime | None, Query(description="ISO 8601; inclusive")]
Until = Annotated[datetime | None, Query(description="ISO 8601; exclusive")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def history_routes() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["history"])

    @router.get("/verdicts/{item_id}", summary="An item's verdicts and dead letters, newest first")
    async def item_history(item_id: str, request: Request) -> dict[str, Any]:
        _checked(id=item_id)
        tenant = tenant_scope(request, None)
        entries = await _guarded(queries.history(_engine(request), item_id, tenant))
        if not entries:
            raise ApiError(404, "not_found", "no verdict or dead letter for this id")
        note(request, verdict_ids=[item_id])
        return {"id": item_id, "history": entries}

    @router.get("/verdicts", summary="Verdicts, newest first, keyset-paginated")
    async def list_verdicts(
        request: Request,
        tenant: str | None = None,
        label: Literal["ai", "human"] | None = None,
        model_id: str | None = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        _checked(tenant=tenant, model_id=model_id, since=since, until=until, cursor=cursor)
        where = queries.VerdictFilter(
            tenant=tenant_scope(request, tenant),
            label=label,
            model_id=model_id,
            since=since,
            until=until,
        )
        rows, next_cursor = await _guarded(
            queries.page_verdicts(_engine(request), where, limit=limit, cursor=cursor)
        )
        note(request, verdict_ids=[r.get("id") for r in rows])
        return {"verdicts": rows, "next_cursor": next_cursor}

    @router.get("/stats", summary="Counts by model, label and outcome per hour or day")
    async def stats(
        request: Request,
        since: Since = None,
        until: Until = None,
        bucket: Literal["hour", "day"] = "hour",
        tenant: str | None = None,
    ) -> dict[str, Any]:
        _checked(tenant=tenant, since=since, until=until)
        scope = tenant_scope(request, tenant)
        rows = await _guarded(
            queries.stats(_engine(request), tenant=scope, since=since, until=until, bucket=bucket)
        )
        return {"bucket": bucket, "tenant": scope, "counts": rows}

    @router.get("/audit", summary="The audit log, newest first (admin keys only)")
    async def audit(
        request: Request,
        tenant: str | None = None,
        key_id: str | None = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        _checked(tenant=tenant, key_id=key_id, since=since, until=until, cursor=cursor)
        who = principal(request)
        if not who.admin:
            raise ApiError(403, "forbidden", "the audit log needs an admin key (key:tenant:admin)")
        rows, next_cursor = await _guarded(
            queries.page_audit(
                _engine(request),
                tenant=tenant_scope(request, tenant),
                key_id=key_id,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
            )
        )
        return {"entries": rows, "next_cursor": next_cursor}

    return router
