"""tiny-tfidf: the detector contract on the committed artifact, plus its own guarantees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepfake_stream.core.errors import ArtifactIntegrityError
from deepfake_stream.models.artifacts import artifact_dir
from deepfake_stream.models.base import Detector
from deepfake_stream.models.dataset import load_labelled
from deepfake_stream.models.detectors.tfidf import TfidfModel, char_wb_ngrams, prepare, word_ngrams
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.registry import load_registry, registry_from_dict
from tests.detector_contract import ODD_TEXTS, TEXTS, DetectorContract

DATA = Path(__file__).parents[1] / "data" / "labelled_small.jsonl"


class TestTinyTfidf(DetectorContract):
    @classmethod
    def make_detector(cls) -> Detector:
        return build_detector(load_registry().resolve("tiny-tfidf").spec())


def _tiny_pipeline():
    from deepfake_stream.models.training.tfidf import DEFAULTS, build_pipeline

    examples = load_labelled(DATA)
    opts = {**DEFAULTS, "min_df": 1, "char_max_features": 3000, "word_max_features": 1000}
    texts = [e.text for e in examples]
    return build_pipeline(opts, 10.0).fit(texts, [e.label for e in examples]), texts


def test_numpy_transform_matches_sklearn() -> None:
    from deepfake_stream.models.training.tfidf import export

    pipeline, texts = _tiny_pipeline()
    payload = json.loads(json.dumps(export(pipeline)))  # through JSON, as it is stored
    probe = [*texts, *TEXTS, *ODD_TEXTS[:-1], "Zusammenfassend: el métro — IN CONCLUSION"]
    ours = TfidfModel(payload).predict_proba(probe)
    theirs = pipeline.predict_proba(probe)[:, 1]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


def test_analyzers_match_sklearn() -> None:
    from collections import Counter

    pipeline, texts = _tiny_pipeline()
    char_vec, word_vec = (v for _, v in pipeline.named_steps["features"].transformer_list)
    for text in [*texts, *ODD_TEXTS[:-1], " \x1c\x85\ufeff İstanbul ΣΟΦΟΣ  x"]:
        p = prepare(text)
        assert Counter(char_wb_ngrams(p, 1, 4)) == Counter(char_vec.build_analyzer()(text))
        assert Counter(word_ngrams(p, 1, 2)) == Counter(word_vec.build_analyzer()(text))


def _copy_artifact(tmp_path: Path) -> Path:
    src = Path(load_verified_dir())
    dst = tmp_path / "tiny-tfidf"
    shutil.copytree(src, dst)
    return dst


def load_verified_dir() -> Path:

    return artifact_dir(load_registry().resolve("tiny-tfidf").artifact or "tiny-tfidf")


def _spec_for(path: Path):
    return (
        load_registry()
        .resolve("tiny-tfidf")
        .spec()
        .__class__(model_id="tiny-tfidf", kind="tfidf", version="2026.11.1", artifact=str(path))
    )


async def test_tampered_artifact_is_refused(tmp_path: Path) -> None:
    art = _copy_artifact(tmp_path)
    model = art / "model.json"
    data = bytearray(model.read_bytes())
    i = data.index(b'"intercept":') + len(b'"intercept":')
    data[i : i + 1] = b"9" if data[i : i + 1] != b"9" else b"8"
    model.write_bytes(bytes(data))
    detector = build_detector(_spec_for(art))
    with pytest.raises(ArtifactIntegrityError, match=r"model\.json.*train --model tiny-tfidf"):
        await detector.load()
    assert detector.ready is False


async def test_copied_artifact_has_the_same_version(tmp_path: Path) -> None:
    detector = build_detector(_spec_for(_copy_artifact(tmp_path)))
    await detector.load()
    reference = TestTinyTfidf.make_detector()
    await reference.load()
    assert detector.version == reference.version
    assert [s.score for s in detector.predict_batch(TEXTS)] == [
        s.score for s in reference.predict_batch(TEXTS)
    ]


def test_train_writes_a_loadable_artifact(tmp_path: Path) -> None:
    from deepfake_stream.models.artifacts import load_verified
    from deepfake_stream.models.training import train

    registry = registry_from_dict(
        {
            "models": {
                "t": {
                    "kind": "tfidf",
                    "size": "tiny",
                    "version": "0.0.1",
                    "artifact": "unused",
                    "options": {"C_grid": [10.0], "min_df": 1, "char_max_features": 2000},
                }
            }
        },
        default_model="t",
        source="test",
    )
    result = train("t", DATA, registry=registry, out_dir=tmp_path / "t", progress=False)
    manifest = load_verified(tmp_path / "t")
    assert result["model_version"] == manifest.versioned("0.0.1")
    assert set(manifest.metrics or {}) == {
        "n", "auroc", "accuracy", "f1", "tpr_at_1pct_fpr", "fpr_at_threshold",
        "tpr_at_threshold", "texts_per_s",
    }  # fmt: skip
    assert result["n_train"] + result["n_test"] == 24
    assert manifest.extra["kind"] == "tfidf"
