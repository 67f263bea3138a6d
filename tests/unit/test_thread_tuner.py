"""The thread tuner picks the thread count that measured fastest and follows a change."""

from __future__ import annotations

from deepfake_stream.consumers.thread_tuner import ThreadTuner, candidates


class FakeTorch:
    """Thread count plus a clock whose calls take ``cost[threads]`` seconds per unit."""

    def __init__(self, cost: dict[int, float]) -> None:
        self.cost = cost
        self.threads = 4
        self.sets: list[int] = []
        self.now = 0.0

    def get(self) -> int:
        return self.threads

    def set(self, n: int) -> None:
        self.threads = n
        self.sets.append(n)

    def clock(self) -> float:
        return self.now

    def call(self, units: float):
        def fn() -> int:
            self.now += self.cost[self.threads] * units
            return self.threads

        return fn


def tuner_for(torch: FakeTorch, cores: int = 2, probe_every: int = 8) -> ThreadTuner:
    return ThreadTuner(
        cores, probe_every=probe_every, threads=(torch.get, torch.set), clock=torch.clock
    )


def test_candidates_cover_small_machines_and_sample_large_ones() -> None:
    assert candidates(1) == [1]
    assert candidates(2) == [1, 2]
    assert candidates(4) == [1, 2, 3, 4]
    assert candidates(16) == [1, 4, 8, 15, 16]


def test_uses_the_faster_count_once_each_was_measured() -> None:
    torch = FakeTorch({1: 2.0, 2: 1.0})  # idle cores: two threads twice as fast
    tuner = tuner_for(torch)
    used = [tuner.run(torch.call(100), 100) for _ in range(7)]
    assert used[:2] == [1, 2]  # each candidate measured first
    assert used[2:] == [2] * 5
    assert tuner.best == 2


def test_work_is_normalised_by_its_size() -> None:
    torch = FakeTorch({1: 1.0, 2: 0.8})
    tuner = tuner_for(torch)
    tuner.run(torch.call(10), 10)  # 1 thread, a small call
    tuner.run(torch.call(1000), 1000)  # 2 threads, a large one: slower in total, faster per unit
    assert tuner.best == 2


def test_follows_a_change_in_load() -> None:
    torch = FakeTorch({1: 2.0, 2: 1.0})
    tuner = tuner_for(torch, probe_every=8)
    for _ in range(20):
        tuner.run(torch.call(100), 100)
    assert tuner.best == 2
    torch.cost = {1: 1.0, 2: 5.0}  # other jobs now keep the second core busy
    used = [tuner.run(torch.call(100), 100) for _ in range(60)]
    assert tuner.best == 1
    assert used[-16:].count(1) == 14  # one probe of 2 threads per 8 calls


def test_a_failing_call_teaches_nothing_and_propagates() -> None:
    torch = FakeTorch({1: 1.0, 2: 1.0})
    tuner = tuner_for(torch)

    def boom() -> int:
        raise ValueError("bad text")

    try:
        tuner.run(boom, 10)
    except ValueError:
        pass
    else:
        raise AssertionError("the error must reach the caller")
    assert tuner.cost == {}


def test_the_workers_thread_limit_caps_the_cores_it_tunes_over(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from deepfake_stream.consumers import service

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(service, "available_cores", lambda: 4)
    assert service.set_inference_threads(0, "cpu") == 4
    assert service.set_inference_threads(0, "cpu", most=1) == 1
    assert service.set_inference_threads(0, "cpu", most=8) == 4
