"""Routing: the registry, the routing decision, and backend liveness (no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepfake_stream.core.errors import ConfigError, UnknownModel
from deepfake_stream.core.liveness import Heartbeat, LivenessView
from deepfake_stream.core.settings import load_settings
from deepfake_stream.models.registry import (
    DEFAULT_REGISTRY,
    Registry,
    load_registry,
    registry_from_dict,
)
from deepfake_stream.routing.decide import Route, candidates, choose_route


def registry(models: dict[str, dict[str, object]], default: str | None = None) -> Registry:
    entries = {mid: {"kind": "echo", "version": "1", **raw} for mid, raw in models.items()}
    return registry_from_dict(
        {"models": entries}, default_model=default or next(iter(models)), source="test.yaml"
    )


# --- registry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "chain"),
    [
        ("tiny", ("cpu",)),
        ("small", ("gpu", "cpu")),
        ("medium", ("gpu", "cpu")),
        ("large", ("modal", "gpu", "cpu")),
    ],
)
def test_size_decides_default_chain(size: str, chain: tuple[str, ...]) -> None:
    assert registry({"m": {"size": size}}).models["m"].chain == chain


def test_explicit_backends_override_size() -> None:
    reg = registry({"m": {"size": "large", "backends": ["cpu", "gpu"]}})
    assert reg.models["m"].chain == ("cpu", "gpu")


def test_entry_fields_are_carried_into_config_and_spec() -> None:
    reg = registry(
        {
            "m": {
                "size": "small",
                "artifact": "art",
                "threshold": 0.7,
                "max_batch_size": 8,
                "options": {"layers": 2},
            }
        }
    )
    cfg = reg.models["m"]
    assert (cfg.kind, cfg.version, cfg.artifact, cfg.threshold, cfg.max_batch_size) == (
        "echo",
        "1",
        "art",
        0.7,
        8,
    )
    spec = cfg.spec("cuda")
    assert (spec.model_id, spec.kind, spec.device, spec.options) == (
        "m",
        "echo",
        "cuda",
        {"layers": 2},
    )
    assert cfg.threshold == 0.7


def test_threshold_defaults_to_half() -> None:
    assert registry({"m": {"size": "tiny"}}).models["m"].threshold == 0.5


def test_unknown_default_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nope"):
        registry({"m": {"size": "tiny"}}, default="nope")


def test_empty_registry_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        registry_from_dict({}, default_model="m", source="empty.yaml")


@pytest.mark.parametrize(
    "entry",
    [
        {"size": "huge"},
        {"size": "tiny", "backends": ["tpu"]},
        {"size": "tiny", "backends": ["cpu", "cpu"]},
        {"size": "tiny", "threshold": 1.5},
        {"size": "tiny", "max_batch_size": 0},
        {"size": "tiny", "surprise": True},
        {"kind": None, "size": "tiny"},
    ],
    ids=["size", "backend", "duplicate", "threshold", "batch", "extra", "kind"],
)
def test_bad_entry_names_the_model(entry: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        registry({"good": {"size": "tiny"}, "broken-model-7": entry}, default="good")
    assert "broken-model-7" in str(info.value)
    assert "test.yaml" in str(info.value)


def test_resolve_default_and_unknown() -> None:
    reg = registry({"a": {"size": "tiny"}, "b": {"size": "small"}}, default="b")
    assert reg.resolve(None).model_id == "b"
    assert reg.resolve("a").model_id == "a"
    with pytest.raises(UnknownModel) as info:
        reg.resolve("missing")
    assert info.value.reason == "unknown_model"
    assert "missing" in str(info.value)


def test_for_backend_lists_models_whose_chain_includes_it() -> None:
    reg = registry({"t": {"size": "tiny"}, "s": {"size": "small"}, "l": {"size": "large"}})
    assert {m.model_id for m in reg.for_backend("cpu")} == {"t", "s", "l"}
    assert {m.model_id for m in reg.for_backend("gpu")} == {"s", "l"}
    assert {m.model_id for m in reg.for_backend("modal")} == {"l"}


def test_load_registry_from_file(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  x:\n    kind: echo\n    size: medium\n    version: '2'\n")
    reg = load_registry(path, default_model="x")
    assert reg.models["x"].chain == ("gpu", "cpu")
    assert reg.models["x"].version == "2"
    with pytest.raises(ConfigError, match="not found"):
        load_registry(tmp_path / "missing.yaml", default_model="x")


def test_shipped_registry_loads_with_its_default() -> None:
    reg = load_registry(DEFAULT_REGISTRY, default_model="tiny-tfidf")
    assert reg.resolve(None).model_id == "tiny-tfidf"


def test_retired_models_load_beside_the_shipped_registry_and_are_never_served() -> None:
    from deepfake_stream.models.registry import load_with_retired

    shipped = load_registry(DEFAULT_REGISTRY, default_model="tiny-tfidf")
    studied = load_with_retired(default_model="tiny-tfidf")
    for retired in ("large-ensemble", "medium-embedding"):  # both retired 2026-12-06 (README)
        assert retired not in shipped.models
        with pytest.raises(UnknownModel, match=f"'{retired}' is not registered .it was retired"):
            shipped.resolve(retired)
    ensemble = studied.resolve("large-ensemble")
    # Its members resolve from the shipped registry, as when it was served.
    assert [m.model_id for m in ensemble.members] == [
        "tiny-tfidf",
        "small-perplexity",
        "medium-embedding",
    ]
    assert {m: c.version for m, c in shipped.models.items()} == {
        m: studied.models[m].version for m in shipped.models
    }


def test_named_retired_models_join_any_registry_with_their_retired_members(
    tmp_path: Path,
) -> None:
    from deepfake_stream.models.registry import load_with_retired, retired_ids

    assert set(retired_ids()) == {"large-ensemble", "medium-embedding"}
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n  tiny-tfidf: {kind: tfidf, size: tiny, version: '1', artifact: tiny-tfidf}\n"
    )
    reg = load_with_retired(path, only=["medium-embedding"], default_model="tiny-tfidf")
    assert sorted(reg.models) == ["medium-embedding", "tiny-tfidf"]
    assert reg.models["tiny-tfidf"].version == "1"  # the file's own entries win
    # The ensemble brings its retired member (medium-embedding) but not a served one the
    # file lacks, and says which.
    with pytest.raises(ConfigError, match="'small-perplexity' is not registered"):
        load_with_retired(path, only=["large-ensemble"], default_model="tiny-tfidf")


# --- choose_route ---------------------------------------------------------------------------


def alive_set(*live: str):  # type: ignore[no-untyped-def]
    calls: list[tuple[str, str]] = []

    def alive(backend: str, model_id: str) -> bool:
        calls.append((backend, model_id))
        return backend in live

    alive.calls = calls  # type: ignore[attr-defined]
    return alive


LARGE = registry({"big": {"size": "large"}}).models["big"]
TINY = registry({"t": {"size": "tiny"}}).models["t"]


def test_route_follows_chain_when_all_alive() -> None:
    assert choose_route(LARGE, None, alive_set("modal", "gpu", "cpu")) == Route(
        "modal", ("gpu", "cpu")
    )


def test_prefer_is_honoured_when_alive() -> None:
    assert choose_route(LARGE, "cpu", alive_set("modal", "gpu", "cpu")) == Route(
        "cpu", ("modal", "gpu")
    )
    assert choose_route(LARGE, "gpu", alive_set("modal", "gpu", "cpu")) == Route(
        "gpu", ("modal", "cpu")
    )


def test_prefer_dead_falls_back_in_chain_order() -> None:
    assert choose_route(LARGE, "gpu", alive_set("modal", "cpu")) == Route("modal", ("cpu",))


def test_prefer_outside_chain_is_ignored() -> None:
    assert candidates(TINY, "gpu") == ("cpu",)
    alive = alive_set("cpu", "gpu")
    assert choose_route(TINY, "gpu", alive) == Route("cpu", ())
    assert all(backend != "gpu" for backend, _ in alive.calls)


def test_dead_backends_are_skipped_and_not_put_back() -> None:
    route = choose_route(LARGE, None, alive_set("gpu", "cpu"))
    assert route == Route("gpu", ("cpu",))
    assert "modal" not in route.chain
    assert choose_route(LARGE, None, alive_set("cpu")) == Route("cpu", ())


def test_no_live_backend_is_none() -> None:
    assert choose_route(LARGE, None, alive_set()) is None
    assert choose_route(LARGE, "cpu", alive_set("tpu")) is None


def test_liveness_is_asked_per_model() -> None:
    alive = alive_set("cpu")
    choose_route(TINY, None, alive)
    assert alive.calls == [("cpu", "t")]


# --- liveness -------------------------------------------------------------------------------


class Clock:
    def __init__(self, t: int = 1_000_000) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def hb(
    worker: str = "w1",
    backend: str = "cpu",
    models: tuple[str, ...] = ("m",),
    ts: int = 1_000_000,
    ttl: int = 10_000,
    state: str = "alive",
) -> Heartbeat:
    return Heartbeat(
        worker_id=worker, backend=backend, models=models, ts_ms=ts, ttl_ms=ttl, state=state
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def view(clock: Clock) -> LivenessView:
    return LivenessView(load_settings(), clock=clock)


def test_nothing_is_alive_before_a_heartbeat(view: LivenessView) -> None:
    assert not view.alive("cpu")
    assert not view.alive("cpu", "m")
    assert view.live_backends() == {}


def test_heartbeat_expires_after_ttl(view: LivenessView, clock: Clock) -> None:
    view.observe(hb(ts=clock.t, ttl=10_000))
    assert view.alive("cpu", "m")
    clock.t += 9_999
    assert view.alive("cpu", "m")
    clock.t += 1
    assert not view.alive("cpu", "m")
    assert view.live_backends() == {}


def test_leaving_removes_the_worker_at_once(view: LivenessView, clock: Clock) -> None:
    view.observe(hb(ts=clock.t))
    assert view.alive("cpu", "m")
    view.observe(hb(ts=clock.t + 1, state="leaving"))
    assert not view.alive("cpu", "m")
    assert not view.alive("cpu")


def test_older_heartbeat_does_not_overwrite_newer(view: LivenessView, clock: Clock) -> None:
    view.observe(hb(ts=clock.t))
    view.observe(hb(ts=clock.t - 5_000, state="leaving"))  # a late, stale leave
    assert view.alive("cpu", "m")
    view.observe(hb(ts=clock.t + 1_000, state="leaving"))
    view.observe(hb(ts=clock.t - 1, models=("m", "other")))  # stale revival
    assert not view.alive("cpu", "m")


def test_model_filtering(view: LivenessView, clock: Clock) -> None:
    view.observe(hb("w1", "cpu", ("a", "b"), ts=clock.t))
    view.observe(hb("w2", "gpu", ("b",), ts=clock.t))
    assert view.alive("cpu", "a") and view.alive("cpu", "b")
    assert not view.alive("gpu", "a")
    assert view.alive("gpu", "b")
    assert view.alive("gpu")  # any model
    assert not view.alive("modal")
    assert view.live_backends() == {"cpu": ["a", "b"], "gpu": ["b"]}
    assert view.first_alive(["modal", "gpu", "cpu"], "a") == "cpu"
    assert view.first_alive(["modal", "gpu", "cpu"], "b") == "gpu"
    assert view.first_alive(["modal"], "b") is None


def test_one_live_worker_keeps_backend_alive(view: LivenessView, clock: Clock) -> None:
    view.observe(hb("w1", ts=clock.t, ttl=1_000))
    view.observe(hb("w2", ts=clock.t + 5_000, ttl=10_000))
    clock.t += 2_000
    assert view.alive("cpu", "m")  # w1 expired, w2 still fresh
    view.observe(hb("w2", ts=clock.t + 6_000, state="leaving"))
    assert not view.alive("cpu", "m")


def test_usable_as_choose_route_predicate(view: LivenessView, clock: Clock) -> None:
    view.observe(hb("g", "gpu", ("big",), ts=clock.t))
    view.observe(hb("c", "cpu", ("big",), ts=clock.t))
    assert choose_route(LARGE, None, view.alive) == Route("gpu", ("cpu",))
    clock.t += 60_000
    assert choose_route(LARGE, None, view.alive) is None


def test_heartbeat_round_trip() -> None:
    beat = Heartbeat(
        worker_id="cpu-h-1-abc",
        backend="cpu",
        models=("a", "b"),
        ts_ms=123,
        ttl_ms=10_000,
        state="leaving",
        host="h",
        pid=42,
    )
    raw = beat.encode()
    assert isinstance(raw, bytes)
    assert json.loads(raw)["models"] == ["a", "b"]
    assert Heartbeat.decode(raw) == beat


def test_heartbeat_decode_defaults_optional_fields() -> None:
    raw = json.dumps({"worker_id": "w", "backend": "gpu", "ts_ms": 5, "ttl_ms": 7}).encode()
    beat = Heartbeat.decode(raw)
    assert beat.models == () and beat.state == "alive" and beat.host == "" and beat.pid == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"",
        b"[]",
        b"{}",
        b'{"worker_id": "w", "backend": "cpu", "ts_ms": 1}',
        b'{"worker_id": "w", "backend": "cpu", "ts_ms": "soon", "ttl_ms": 1}',
    ],
)
def test_malformed_heartbeat_raises_what_the_reader_catches(raw: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        Heartbeat.decode(raw)


def test_live_at_boundary() -> None:
    beat = hb(ts=100, ttl=10)
    assert beat.live_at(109)
    assert not beat.live_at(110)
    assert not hb(ts=100, ttl=10, state="leaving").live_at(100)
