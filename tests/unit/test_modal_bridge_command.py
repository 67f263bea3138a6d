"""`deepfake-stream modal-bridge`: which models it serves, and that it needs no local device."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepfake_stream.cli import build_parser
from deepfake_stream.commands.modal_bridge import modal_detectors
from deepfake_stream.consumers.service import resolve_device
from deepfake_stream.core.errors import ConfigError
from deepfake_stream.core.settings import load_settings
from deepfake_stream.models.modal_detector import ModalDetector
from deepfake_stream.models.registry import registry_from_dict

DOC = {
    "models": {
        "small-one": {"kind": "echo", "size": "tiny", "version": "1"},
        "big-one": {"kind": "echo", "size": "large", "version": "2"},
        "pinned": {"kind": "echo", "size": "small", "version": "3", "backends": ["modal", "cpu"]},
    }
}


def test_one_modal_detector_per_model_whose_chain_contains_modal() -> None:
    registry = registry_from_dict(DOC, default_model="small-one", source="test")
    settings = load_settings({("modal", "timeout_s"): 7})
    detectors = modal_detectors(settings, registry)
    assert sorted(detectors) == ["big-one", "pinned"]
    d = detectors["big-one"]
    assert isinstance(d, ModalDetector)
    assert d.spec.device == "remote" and d.version == "2" and not d.ready
    assert d.settings.timeout_s == 7


def test_models_only_narrows_the_bridge() -> None:
    registry = registry_from_dict(DOC, default_model="small-one", source="test")
    settings = load_settings({("models", "only"): "pinned"})
    assert list(modal_detectors(settings, registry)) == ["pinned"]


def test_the_bridge_needs_no_local_device() -> None:
    assert resolve_device(load_settings(), "modal") == "remote"


def test_command_has_bounded_run_flags_and_modal_settings() -> None:
    parser, modules = build_parser()
    assert "modal-bridge" in modules
    args = parser.parse_args(
        ["modal-bridge", "--count", "5", "--timeout", "2", "--modal-timeout-s", "3"]
    )
    assert args.count == 5 and args.timeout == 2
    assert args.setting__modal__timeout_s == "3"


def test_nothing_to_serve_is_a_clear_error(tmp_path: Path) -> None:
    import argparse

    from deepfake_stream.commands import modal_bridge

    registry_file = tmp_path / "models.yaml"
    registry_file.write_text("models:\n  only-tiny: {kind: echo, size: tiny, version: '1'}\n")
    settings = load_settings(
        {("models", "config"): registry_file, ("models", "default"): "only-tiny"}
    )
    assert modal_detectors(settings) == {}
    with pytest.raises(ConfigError, match="nothing to serve"):
        modal_bridge.run(argparse.Namespace(count=None, timeout=None), settings)
