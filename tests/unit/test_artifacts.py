"""Safe artifacts: round trip, digest-based version, integrity checks, no pickle."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from deepfake_stream.core.errors import ArtifactIntegrityError
from deepfake_stream.models.artifacts import (
    ARTIFACTS_ROOT,
    artifact_dir,
    load_verified,
    manifest_digest,
    save_artifact,
)


def _save(path: Path, **kw):
    return save_artifact(
        path,
        model_id="m",
        release="1.0",
        files={"model.json": {"a": [1, 2]}, "w.safetensors": {"w": np.arange(6.0)}},
        **kw,
    )


def test_round_trip(tmp_path: Path) -> None:
    saved = _save(tmp_path / "m", metrics={"auroc": 0.9}, extra={"kind": "test"})
    m = load_verified(tmp_path / "m")
    assert (
        m.digest
        == saved.digest
        == manifest_digest(json.loads((m.directory / "manifest.json").read_text()))
    )
    assert re.fullmatch(r"2\.0\+sha256:[0-9a-f]{12}", m.versioned("2.0"))
    assert m.read_json("model.json") == {"a": [1, 2]}
    np.testing.assert_array_equal(m.read_arrays("w.safetensors")["w"], np.arange(6.0))
    assert m.metrics == {"auroc": 0.9} and m.extra == {"kind": "test"}
    assert m.size_bytes > 0


def test_resave_replaces(tmp_path: Path) -> None:
    _save(tmp_path / "m")
    (tmp_path / "m" / "stale.json").write_text("{}")
    save_artifact(tmp_path / "m", model_id="m", release="1", files={"x.json": [1]})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["manifest.json", "x.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("victim", ["model.json", "w.safetensors"])
def test_tampered_file_is_named(tmp_path: Path, victim: str) -> None:
    _save(tmp_path / "m")
    path = tmp_path / "m" / victim
    path.write_bytes(path.read_bytes()[:-1] + b" ")
    with pytest.raises(ArtifactIntegrityError, match=rf"{victim}.*deepfake-stream train --model m"):
        load_verified(tmp_path / "m")


def test_missing_pieces(tmp_path: Path) -> None:
    with pytest.raises(ArtifactIntegrityError, match=r"no manifest\.json"):
        load_verified(tmp_path / "nothing")
    _save(tmp_path / "m")
    (tmp_path / "m" / "model.json").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"model\.json is missing"):
        load_verified(tmp_path / "m")


def test_manifest_cannot_point_outside(tmp_path: Path) -> None:
    _save(tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "manifest.json").read_text())
    doc["files"]["../evil.json"] = "0" * 64
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactIntegrityError, match="plain file name"):
        load_verified(tmp_path / "m")


def test_refuses_pickle_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pickle"):
        save_artifact(tmp_path / "p", model_id="p", release="1", files={"m.pkl": b"x"})


def test_artifact_dir() -> None:
    assert artifact_dir("tiny-tfidf") == ARTIFACTS_ROOT / "tiny-tfidf"
    assert artifact_dir("/abs/x") == Path("/abs/x")
    assert artifact_dir("./rel") == Path("./rel")
