"""The worker's inference thread: calls run in order on one daemon thread, errors reach the
caller, and a call that never returns does not keep the process from exiting."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from deepfake_stream.consumers.inference_thread import InferenceThread


def test_calls_run_in_order_on_one_thread_and_errors_reach_the_caller() -> None:
    ex = InferenceThread("t")
    names = [ex.submit(lambda: threading.current_thread().name) for _ in range(3)]
    assert [f.result(5) for f in names] == ["t"] * 3
    assert threading.current_thread().name != "t"
    with pytest.raises(ZeroDivisionError):
        ex.submit(lambda: 1 / 0).result(5)
    ex.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        ex.submit(print)


def test_shutdown_cancels_queued_calls_behind_a_stuck_one() -> None:
    release = threading.Event()
    ex = InferenceThread("t")
    stuck = ex.submit(release.wait, 30)
    while not stuck.running():
        time.sleep(0.001)
    queued = ex.submit(lambda: "never")
    ex.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled() and not stuck.done()
    release.set()
    assert stuck.result(5) is True


def test_a_hung_call_does_not_keep_the_process_alive() -> None:
    """ThreadPoolExecutor joins its threads at exit: a hung inference would keep a stopping
    worker alive for ever."""
    code = (
        "import threading\n"
        "from deepfake_stream.consumers.inference_thread import InferenceThread\n"
        "ex = InferenceThread('t')\n"
        "ex.submit(threading.Event().wait)\n"
        "ex.shutdown(wait=False)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=30, capture_output=True)
    assert proc.returncode == 0, proc.stderr
