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

Each entry of ``DETECT_API_KEYS`` is ``key``, ``key:tenant`` (bound to one tenant: it sees
and writes only that tenant's items and verdicts), ``key:tenant:admin`` or ``key::admin``
(an admin key: it may also read the audit log). A key cannot contain ``:`` or ``,``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from deepfake_stream.core.settings import Settings
from deepfake_stream.shim.errors import ApiError

API_KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="An API key")
MAX_TRACKED_CLIENTS = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: ``request.state.principal`` once the key is checked."""

    tenant: str | None = None
    """None: an unbound key (or no keys configured on loopback) sees every tenant."""
    admin: bool = False
    key_id: str | None = None
    """A non-reversible fingerprint of the key (the audit log's key id), never the key."""


OPEN = Principal(admin=True)
"""No keys configured (loopback only): today's rule, everything is allowed."""


def _entries(settings: Settings) -> list[tuple[str, str | None, bool]]:
    raw = settings.api.api_keys.get_secret_value() if settings.api.api_keys else ""
    out = []
    for entry in raw.split(","):
        key, _, rest = entry.strip().partition(":")
        tenant, _, role = rest.partition(":")
        if key.strip():
            out.append((key.strip(), tenant.strip() or None, role.strip() == "admin"))
    return out


def parse_keys(settings: Settings) -> tuple[bytes, ...]:
    """sha256 digests of the configured keys (equal lengths make the comparison constant)."""
    return tuple(hashlib.sha256(key.encode()).digest() for key, _, _ in _entries(settings))


def key_id(api_key: str | None) -> str | None:
    """A non-reversible fingerprint of an API key (16 hex digits of a salted SHA-256):
    enough to tell keys apart in the audit log, never enough to use one."""
    if not api_key:
        return None
    return hashlib.sha256(b"deepfake-stream:key:" + api_key.encode()).hexdigest()[:16]


def parse_principals(settings: Settings) -> tuple[Principal, ...]:
    """The principal of each configured key, in the order of :func:`parse_keys`."""
    return tuple(
        Principal(tenant=tenant, admin=admin, key_id=key_id(key))
        for key, tenant, admin in _entries(settings)
    )


def principal_of(
    given: str, digests: tuple[bytes, ...], principals: tuple[Principal, ...]
) -> Principal | None:
    """The principal of a key that :func:`key_matches` accepted (every key compared)."""
    probe = hashlib.sha256(given.encode()).digest()
    found = None
    for digest, principal in zip(digests, principals, strict=True):
        if hmac.compare_digest(probe, digest) and found is None:
            found = principal
    return found


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
            raise _too_many(
                "too_many_failed_keys",
                f"too many failed {API_KEY_HEADER} attempts from this address",
                locked,
            )
        if not api_key or not key_matches(api_key, state.api_keys):
            state.auth_failures.acquire(address)
            raise ApiError(
                401,
                "unauthorized",
                f"missing or wrong {API_KEY_HEADER} header",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )
        request.state.principal = principal_of(
            api_key, state.api_keys, state.principals
        ) or Principal(key_id=key_id(api_key))
        # Buckets are keyed by a digest so the limiter never holds keys in clear text.
        who = "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:32]
    else:
        request.state.principal = OPEN
        who = "client:" + (request.client.host if request.client else "unknown")
    wait = state.limiter.acquire(who)
    if wait > 0:
        raise _too_many(
            "rate_limited", f"rate limit of {state.limiter.rate:g} requests/s exceeded", wait
        )


def _too_many(code: str, what: str, wait_s: float) -> ApiError:
    """429 with Retry-After in whole seconds (at least 1), said in the message too."""
    retry = max(1, math.ceil(wait_s))
    return ApiError(429, code, f"{what}; retry in {retry}s", headers={"Retry-After": str(retry)})
