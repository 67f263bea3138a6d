"""API keys (header ``X-API-Key``) and a per-key token-bucket rate limit.

Keys come from ``DETECT_API_KEYS`` (comma separated). Unset means no key is required; the
``shim`` command then refuses to listen anywhere but loopback. Keys are compared in constant
time against every configured key, so the answer time says nothing about how close a guess
was. Each key (or, without keys, each client address) gets ``HTTP_RATE_LIMIT_BURST`` requests
at once, refilled at ``HTTP_RATE_LIMIT_RPS``; past that the shim answers 429 with
``Retry-After`` (whole seconds until a request would be allowed).

Failed key attempts are limited per client address: ``HTTP_AUTH_FAIL_BURST`` failures at
once, refilled at ``HTTP_AUTH_FAIL_RPS``. Past that, every request from the address answers
429 with ``Retry-After`` without its key being checked, so a guesser learns nothing more until
the bucket refills (about 218 guesses/s were possible before).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from deepfake_stream.settings import Settings
from deepfake_stream.shim.errors import ApiError

API_KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="An API key")
MAX_TRACKED_CLIENTS = 10_000


def parse_keys(settings: Settings) -> tuple[bytes, ...]:
    """sha256 digests of the configured keys (equal lengths make the comparison constant)."""
    raw = settings.api.api_keys.get_secret_value() if settings.api.api_keys else ""
    return tuple(hashlib.sha256(k.strip().encode()).digest() for k in raw.split(",") if k.strip())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def key_matches(given: str, digests: tuple[bytes, ...]) -> bool:
    probe = hashlib.sha256(given.encode()).digest()
    found = False
    for digest in digests:  # no early exit: every key is compared every time
        found |= hmac.compare_digest(probe, digest)
    return found


class RateLimiter:
    """Token buckets keyed by client identity; ``acquire`` returns seconds to wait (0 = go)."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait_time(self, who: str) -> float:
        """Seconds until ``who`` has a token, taking none (0 = it has one now)."""
        if self.rate <= 0:
            return 0.0
        tokens, last = self._buckets.get(who, (float(self.burst), self._clock()))
        tokens = min(float(self.burst), tokens + (self._clock() - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def acquire(self, who: str) -> float:
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, last = self._buckets.pop(who, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[who] = (tokens, now)
        while len(self._buckets) > MAX_TRACKED_CLIENTS:  # forget the least recently seen
            self._buckets.popitem(last=False)
        return wait


async def require_api_key(request: Request, api_key: str | None = Security(api_key_header)) -> None:
    """Dependency for every route but health and metrics: 401 on a missing or wrong key,
    429 with Retry-After past the key's rate limit."""
    state = request.app.state.shim
    if state.api_keys:
        address = "client:" + (request.client.host if request.client else "unknown")
        locked = state.auth_failures.wait_time(address)
        if locked > 0:
            retry = max(1, math.ceil(locked))
            raise ApiError(
                429,
                "too_many_failed_keys",
                f"too many failed {API_KEY_HEADER} attempts from this address; retry in {retry}s",
                headers={"Retry-After": str(retry)},
            )
        if not api_key or not key_matches(api_key, state.api_keys):
            state.auth_failures.acquire(address)
            raise ApiError(
                401,
                "unauthorized",
                f"missing or wrong {API_KEY_HEADER} header",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )
        # Buckets are keyed by a digest so the limiter never holds keys in clear text.
        who = "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:32]
    else:
        who = "client:" + (request.client.host if request.client else "unknown")
    wait = state.limiter.acquire(who)
    if wait > 0:
        retry = max(1, math.ceil(wait))
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {state.limiter.rate:g} requests/s exceeded; retry in {retry}s",
            headers={"Retry-After": str(retry)},
        )
