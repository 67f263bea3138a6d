"""`bench` measures a retired model (medium-embedding, the batching and GPU goals' workload)
through the same router and workers as a served one: they are child processes that read
MODELS_CONFIG, so the bench hands them a registry that holds it."""

from __future__ import annotations

from deepfake_stream.bench.procs import settings_env
from deepfake_stream.bench.run import DEFAULT_MODELS, serving_retired
from deepfake_stream.core.settings import load_settings
from deepfake_stream.models.registry import load_registry, retired_ids


def test_the_default_workloads_are_served_or_retired_models() -> None:
    shipped = load_registry()
    assert all(m in shipped.models or m in retired_ids() for m in DEFAULT_MODELS)
    assert "medium-embedding" not in shipped.models  # retired 2026-12-06, still benchmarked


def test_children_of_a_bench_of_a_retired_model_load_it_from_their_environment() -> None:
    settings = load_settings()
    with serving_retired(settings, ["medium-embedding"]) as with_it:
        path = with_it.models.config
        assert path is not None and path.is_file()
        assert settings_env(with_it)["MODELS_CONFIG"] == str(path)
        children = load_registry(path)  # as the router and workers load it
        assert {"medium-embedding", *load_registry().models} == set(children.models)
        assert "large-ensemble" not in children.models  # only what was asked for
    assert not path.exists()  # removed with the run
    assert settings.models.config is None  # the caller's settings are untouched


def test_a_bench_of_served_models_keeps_the_configured_registry() -> None:
    settings = load_settings()
    with serving_retired(settings, []) as same:
        assert same is settings
