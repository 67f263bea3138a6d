"""The Modal backend: a :class:`~deepfake_stream.models.base.Detector` that scores on the deployed
Modal app.

``deepfake-stream modal-bridge`` runs the ordinary worker loop (micro-batches, commit after
acks, fallback, heartbeats) with one :class:`ModalDetector` per model whose chain contains
``modal``. Each one looks up ``modal.Cls.from_name(MODAL_APP_NAME, "Detector")`` and calls
``Detector(model_id=...).score.remote.aio(texts)`` (the class in ``deploy/modal/app.py``).

Failure policy: the remote side is one backend, so an infrastructure failure (timeout,
authentication, unknown app, lost connection, a crashed container) is a
:class:`BackendUnavailable` for the whole batch, which the worker hands on at once to the
next live backend of each item's chain without splitting it. Failures feed a circuit
breaker; while it is open the detector fails immediately and reports ``ready = False``, so
the bridge's heartbeats stop advertising the model and the router sends new items straight
to the next backend. A :class:`ModelError` raised by the remote detector is a failure too
(the deployment may be broken for every input): it is not split into halves on Modal, which
would cost 2n-1 remote calls per batch; the batch goes to the next backend, whose local
isolation finds a real culprit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from deepfake_stream.core.circuit_breaker import CircuitBreaker
from deepfake_stream.core.errors import BackendUnavailable, ModelError
from deepfake_stream.core.settings import ModalSettings
from deepfake_stream.models.base import DetectorSpec, Score

log = logging.getLogger(__name__)

REMOTE_CLASS = "Detector"
"""The class name in deploy/modal/app.py that the bridge looks up."""

RemoteScore = Callable[[list[str]], Awaitable[dict[str, Any]]]
"""One remote call: texts → ``{"scores": [...], "model_version": "..."}``."""
Connect = Callable[[], Awaitable[RemoteScore]]
"""Looks the remote up (raises when unreachable / unauthenticated) and returns its caller."""

# The event loop thread may need a moment beyond the timeout to cancel the remote calls.
_BACKSTOP_S = 1.0


def modal_connect(app_name: str, model_id: str) -> Connect:
    """The real lookup through the ``modal`` SDK (needs Modal credentials)."""

    async def connect() -> RemoteScore:
        import modal

        cls = modal.Cls.from_name(app_name, REMOTE_CLASS)
        await cls.hydrate.aio()  # AuthError / NotFoundError / ConnectionError surface here
        remote: RemoteScore = cls(model_id=model_id).score.remote.aio  # modal's methods are Any
        return remote

    return connect


class ModalDetector:
    """Scores through the deployed Modal app; see the module docstring for the policy.

    ``predict_batch`` is synchronous (the worker calls it in its inference thread). The
    remote calls are coroutines on a private event loop in a thread of its own: the
    inference thread submits one coroutine per micro-batch and waits on it with a hard
    deadline. Async rather than Modal's blocking API in a thread pool because a timed-out
    call must really end: ``asyncio.timeout`` cancels the call and frees its in-flight
    slot, whereas a blocking call stuck in a pool thread keeps that thread (and the slot)
    until Modal gives up. A long-lived loop also keeps the Modal client's connection and the
    in-flight semaphore across batches, and runs the periodic lookup retries without
    touching the worker's own event loop (which must keep heartbeating to Kafka).
    """

    numerics: str | None = None
    """The remote app's machine scores; its kernels are not known here."""

    def __init__(
        self,
        spec: DetectorSpec,
        settings: ModalSettings,
        *,
        connect: Connect | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self._connect = connect or modal_connect(settings.app_name, spec.model_id)
        self.breaker = breaker or CircuitBreaker(
            failures=settings.breaker_failures, cooldown_s=settings.breaker_cooldown_s
        )
        self._remote: RemoteScore | None = None
        self._lookup_error = "not looked up yet"
        self._remote_version: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._retry: concurrent.futures.Future[None] | None = None
        self._sem: asyncio.Semaphore | None = None

    @property
    def ready(self) -> bool:
        """Advertised in heartbeats: looked up, and the circuit is not open."""
        return self._remote is not None and self.breaker.accepting

    @property
    def version(self) -> str:
        return self._remote_version or self.spec.version

    # -- lifecycle -------------------------------------------------------------------------

    async def load(self) -> None:
        """Start the private loop and look the app up. Never raises: an unreachable or
        unauthenticated Modal leaves the detector not ready and retries in the background."""
        if self._loop is not None:
            return  # already loaded (or retrying its lookup in the background)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"modal-{self.spec.model_id}", daemon=True
        )
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._lookup(), self._loop)
        if not await asyncio.wrap_future(fut):
            log.error(
                "Modal app %s not reachable / not authenticated: %s; the bridge advertises no "
                "models, so the router skips Modal (model %s; lookup retried every %gs; see "
                "deploy/modal/README.md)",
                self.settings.app_name,
                self._lookup_error,
                self.spec.model_id,
                self.settings.breaker_cooldown_s,
            )
            self._retry = asyncio.run_coroutine_threadsafe(self._retry_lookups(), self._loop)

    async def _lookup(self) -> bool:
        self._sem = asyncio.Semaphore(self.settings.max_inflight)
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                self._remote = await self._connect()
        except Exception as exc:  # every failure means "not reachable"
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {self.settings.timeout_s:g}s"
            self._lookup_error = reason
            return False
        log.info(
            "Modal app %s reachable: model %s is served by %s.%s",
            self.settings.app_name,
            self.spec.model_id,
            self.settings.app_name,
            REMOTE_CLASS,
        )
        return True

    async def _retry_lookups(self) -> None:
        while self._remote is None:
            await asyncio.sleep(self.settings.breaker_cooldown_s)
            if not await self._lookup():
                log.warning(
                    "Modal app %s still not reachable: %s",
                    self.settings.app_name,
                    self._lookup_error,
                )

    async def unload(self) -> None:
        self._remote = None
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        self._retry = None
        # A call that ignores cancellation must not block shutdown (the thread is a daemon).
        with contextlib.suppress(TimeoutError, RuntimeError):
            await asyncio.wait_for(
                asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_cancel_all(), loop)), 5
            )
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            await asyncio.to_thread(thread.join, 5)
        if not loop.is_running():
            loop.close()

    # -- scoring ---------------------------------------------------------------------------

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        if not texts:
            return []
        remote, loop = self._remote, self._loop
        if remote is None or loop is None:
            raise BackendUnavailable(
                f"Modal app {self.settings.app_name} not reachable / not authenticated: "
                f"{self._lookup_error}"
            )
        if not self.breaker.allow():
            raise BackendUnavailable(
                f"Modal circuit open after {self.breaker.failures} failed batches; next trial "
                f"in {self.breaker.retry_in():.0f}s"
            )
        fut = asyncio.run_coroutine_threadsafe(self._score_all(remote, list(texts)), loop)
        try:
            scores, version = fut.result(timeout=self.settings.timeout_s + _BACKSTOP_S)
        except BackendUnavailable:
            self.breaker.record_failure()
            raise
        except ModelError as exc:
            # The deployment failed on this batch. Passing the ModelError on would make the
            # worker halve the batch to find a culprit: 2n-1 remote calls per batch when the
            # deployment itself is broken, every one of them counted a success. It is one
            # failed call: the whole batch goes to the next backend (where a real culprit is
            # isolated locally), and enough of them open the circuit.
            self.breaker.record_failure()
            raise BackendUnavailable(f"Modal's detector failed on the batch: {exc}") from exc
        except concurrent.futures.TimeoutError:
            fut.cancel()
            self.breaker.record_failure()
            raise BackendUnavailable(
                f"Modal did not answer within {self.settings.timeout_s:g}s"
            ) from None
        except Exception as exc:
            self.breaker.record_failure()
            raise BackendUnavailable(f"Modal call failed: {type(exc).__name__}: {exc}") from exc
        self.breaker.record_success()
        self._remote_version = version
        return [Score(score=s) for s in scores]

    async def _score_all(self, remote: RemoteScore, texts: list[str]) -> tuple[list[float], str]:
        """Sub-batches of at most MODAL_MAX_BATCH, at most MODAL_MAX_INFLIGHT at once, all
        under one deadline; the first failure cancels the rest."""
        size = self.settings.max_batch
        chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
        sem = self._sem or asyncio.Semaphore(self.settings.max_inflight)

        async def one(chunk: list[str]) -> dict[str, Any]:
            async with sem:
                return await remote(chunk)

        tasks = [asyncio.ensure_future(one(c)) for c in chunks]
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                answers = await asyncio.gather(*tasks)
        except TimeoutError:
            raise BackendUnavailable(
                f"Modal did not answer within {self.settings.timeout_s:g}s "
                f"({len(chunks)} calls of <= {size} texts)"
            ) from None
        except (ModelError, BackendUnavailable):
            raise  # the remote detector's own verdict on its input (or ours, already mapped)
        except Exception as exc:
            raise BackendUnavailable(f"Modal call failed: {type(exc).__name__}: {exc}") from exc
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        scores: list[float] = []
        version = self.spec.version
        for chunk, answer in zip(chunks, answers, strict=True):
            try:
                got = [float(s) for s in answer["scores"]]
                version = str(answer["model_version"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BackendUnavailable(
                    f"Modal answered in an unexpected shape ({type(exc).__name__}: {exc}); "
                    "redeploy deploy/modal/app.py from this version"
                ) from None
            if len(got) != len(chunk):
                raise BackendUnavailable(
                    f"Modal returned {len(got)} scores for {len(chunk)} texts; redeploy the app"
                )
            scores.extend(got)
        return scores, version


async def _cancel_all() -> None:
    """Cancel every other task on the private loop (calls in flight, lookup retries)."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
