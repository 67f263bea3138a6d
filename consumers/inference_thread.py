"""The thread a worker scores in: one daemon thread running submitted calls in order.

Like ``ThreadPoolExecutor(max_workers=1)``, except that its thread is a daemon. An inference
that never returns (a stuck kernel, a remote call without a timeout) cannot be killed; a
worker abandons that thread and scores in a fresh one (see ``Worker``). ThreadPoolExecutor's
threads are joined at interpreter exit, so an abandoned hung one would keep a stopping
worker alive for ever; a daemon thread does not.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any


class InferenceThread(Executor):
    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._closed:
            raise RuntimeError("cannot schedule new calls after shutdown")
        future: Future[Any] = Future()
        self._calls.put((future, fn, args, kwargs))
        return future

    def _run(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            future, fn, args, kwargs = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Ends the thread once its current call returns (never, for a hung one: then it
        stays parked, as a daemon, until the process exits)."""
        self._closed = True
        if cancel_futures:
            while True:
                try:
                    call = self._calls.get_nowait()
                except queue.Empty:
                    break
                if call is not None:
                    call[0].cancel()
        self._calls.put(None)
        if wait:
            self._thread.join()
