"""Redis, optional: the verdict cache and the de-duplication record of published verdicts.

Redis is never on the critical path. ``REDIS_URL`` unset or unreachable means the pipeline
runs without it: the outage is logged once at WARNING, a background task reconnects with
exponential back-off (up to ``REDIS_RETRY_MAX_S``), and every call is bounded by
``REDIS_TIMEOUT_S``. A call that fails or times out answers "nothing known" (a cache miss,
not yet published), so the worst Redis can do is cost an inference or a duplicate verdict,
never lose one.

Keys (``<prefix>`` is ``REDIS_KEY_PREFIX``, default ``dfs:v1``):

- ``<prefix>:cache:<model_version>:<sha256(text)>`` → JSON ``{"score", "model_id",
  "scored_at"}``, TTL ``REDIS_CACHE_TTL_S``.
- ``<prefix>:published:<model_version>:<sha256(tenant, id, text_sha256)>`` → ``1``, TTL
  ``REDIS_PUBLISHED_TTL_S``; written only after the broker acknowledged that verdict. The key
  is the contract's de-duplication key ``(tenant, id, model_version, text_sha256)``: an edited
  text, or another tenant's item with the same id, is a new item and is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from deepfake_stream.core.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def text_digest(text: str) -> str:
    """SHA-256 hex of the text as received (a verdict's ``text_sha256``). A lone surrogate
    (valid JSON, not UTF-8) is hashed as its escape, so hashing never raises."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class DedupKey(NamedTuple):
    """What makes a verdict the verdict for one request (contract, Delivery)."""

    tenant: str | None
    item_id: str
    model_version: str
    text_sha256: str


class RedisStore:
    """One Redis client per service; every public method degrades to "unknown" on error."""

    def __init__(self, settings: Settings) -> None:
        self.cfg = settings.redis
        self.prefix = self.cfg.key_prefix
        self.available = False
        self.errors = 0
        self._client: Any = None
        self._reconnect: asyncio.Task[None] | None = None

    # -- keys -----------------------------------------------------------------------------
    def cache_key(self, model_version: str, text: str) -> str:
        return f"{self.prefix}:cache:{model_version}:{text_digest(text)}"

    def published_key(self, key: DedupKey) -> str:
        # Hashed: tenant and id are client strings (any length, any character).
        who = json.dumps([key.tenant, key.item_id, key.text_sha256]).encode()
        return f"{self.prefix}:published:{key.model_version}:{hashlib.sha256(who).hexdigest()}"

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> RedisStore:
        if not self.cfg.url:
            log.warning("REDIS_URL is unset: running without verdict cache and de-duplication")
            return self
        from redis.asyncio import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._client = Redis.from_url(
            self.cfg.url,
            socket_timeout=self.cfg.timeout_s,
            socket_connect_timeout=self.cfg.timeout_s,
            retry=Retry(NoBackoff(), 0),  # our own timeout and back-off decide, not redis-py's
        )
        if await self._ping():
            self.available = True
            log.info("redis connected at %s (keys %s:*)", _safe_url(self.cfg.url), self.prefix)
        else:
            self._down("unreachable at start")
        return self

    async def stop(self) -> None:
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(BaseException):
                await self._reconnect
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
        self.available = False

    async def __aenter__(self) -> RedisStore:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._client.ping(), self.cfg.timeout_s))
        except Exception:
            return False

    def _down(self, why: str) -> None:
        """Stop using Redis (logged once per outage) and reconnect in the background."""
        if self.available or self._reconnect is None or self._reconnect.done():
            log.warning(
                "redis %s (%s): running without verdict cache and de-duplication until it is back",
                _safe_url(self.cfg.url or ""),
                why,
            )
        self.available = False
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            if await self._ping():
                self.available = True
                log.info("redis is back at %s", _safe_url(self.cfg.url or ""))
                return
            delay = min(delay * 2, self.cfg.retry_max_s)

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T | None:
        if not self.available:
            return None
        try:
            return await asyncio.wait_for(op(), self.cfg.timeout_s)
        except Exception as exc:  # any failure: this call runs without Redis
            self.errors += 1
            self._down(f"{type(exc).__name__}: {exc}"[:200])
            return None

    # -- verdict cache --------------------------------------------------------------------
    async def cached_scores(self, model_version: str, texts: Sequence[str]) -> list[float | None]:
        """One MGET: the cached score per text, None where unknown (or Redis is away)."""
        if not texts:
            return []
        if not self.available:  # off or away: no key hashing (REDIS_URL unset costs nothing)
            return [None] * len(texts)
        keys = [self.cache_key(model_version, t) for t in texts]
        raw = await self._call(lambda: self._client.mget(keys))
        if raw is None:
            return [None] * len(texts)
        return [_score_of(v) for v in raw]

    async def cache_scores(
        self, model_version: str, model_id: str, scored: dict[str, float]
    ) -> None:
        """One pipelined SET ... EX per text."""
        if not scored or not self.available:
            return

        async def write() -> None:
            from deepfake_stream.schemas import utc_now_iso

            now = utc_now_iso()
            pipe = self._client.pipeline(transaction=False)
            for text, score in scored.items():
                value = json.dumps({"score": score, "model_id": model_id, "scored_at": now})
                pipe.set(self.cache_key(model_version, text), value, ex=self.cfg.cache_ttl_s)
            await pipe.execute()

        await self._call(write)

    # -- de-duplication -------------------------------------------------------------------
    async def already_published(self, keys: Sequence[DedupKey]) -> list[bool]:
        """One MGET over de-duplication keys; False where unknown."""
        if not keys:
            return []
        if not self.available:
            return [False] * len(keys)
        names = [self.published_key(k) for k in keys]
        raw = await self._call(lambda: self._client.mget(names))
        if raw is None:
            return [False] * len(keys)
        return [v is not None for v in raw]

    async def record_published(self, keys: Sequence[DedupKey]) -> None:
        """Call only after the broker acknowledged these verdicts."""
        if not keys or not self.available:
            return

        async def write() -> None:
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.set(self.published_key(key), 1, ex=self.cfg.published_ttl_s)
            await pipe.execute()

        await self._call(write)


def _score_of(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        score = float(json.loads(raw)["score"])
    except (ValueError, KeyError, TypeError):
        return None  # a foreign or corrupt value is a miss, never an error
    return score if 0.0 <= score <= 1.0 else None


def _safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url
