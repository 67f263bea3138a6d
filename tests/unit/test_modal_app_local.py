"""deploy/modal/app.py run locally through Modal's own ``.local()`` calls (no credentials):
the class Modal would deploy loads ``tiny-tfidf`` in its ``@modal.enter`` hook and scores
exactly as the in-process TfidfDetector does, also when driven by the bridge."""

from __future__ import annotations

import pytest

from deepfake_stream.core.settings import ModalSettings
from deepfake_stream.models.modal_detector import REMOTE_CLASS, ModalDetector
from deepfake_stream.models.registry import load_registry
from tests.modal_fakes import load_app_module, local_app_connect

MODEL = "tiny-tfidf"
TEXTS = [
    "honestly the bus was late again and i just walked home in the rain lol",
    "In conclusion, it is important to note that effective communication fosters "
    "collaboration and drives meaningful outcomes across diverse stakeholders.",
    "Our cat knocked the plant over twice this morning. Twice!",
    "Furthermore, leveraging innovative solutions can significantly enhance productivity.",
]


@pytest.fixture(scope="module")
def in_process() -> object:
    import asyncio

    from deepfake_stream.models.kinds import build_detector

    config = load_registry().models.get(MODEL)
    assert config is not None, f"{MODEL} is in the shipped models/registry.yaml"
    detector = build_detector(config.spec("cpu"))
    asyncio.run(detector.load())  # its artifact ships in models/artifacts/
    return detector


def test_app_imports_without_credentials_and_names_the_class_the_bridge_looks_up() -> None:
    app = load_app_module()
    assert app.app.name == ModalSettings().app_name == "deepfake-stream"
    assert REMOTE_CLASS == "Detector" and hasattr(app, REMOTE_CLASS)


def test_local_enter_and_score_match_the_in_process_detector(in_process) -> None:  # type: ignore[no-untyped-def]
    obj = load_app_module().Detector(model_id=MODEL)
    # .local() runs @modal.enter (load) once on this instance, then the method body.
    answer = obj.score.local(TEXTS)
    assert answer["model_version"] == in_process.version
    assert answer["model_version"].startswith("2026.11.1+sha256:")
    expected = [s.score for s in in_process.predict_batch(TEXTS)]
    assert answer["scores"] == pytest.approx(expected, abs=1e-12)
    assert obj.score.local(TEXTS[:1])["scores"] == pytest.approx(expected[:1], abs=1e-12)


def test_unknown_model_fails_in_enter() -> None:
    from deepfake_stream.core.errors import UnknownModel

    obj = load_app_module().Detector(model_id="no-such-model")
    with pytest.raises(UnknownModel, match="no-such-model"):
        obj.score.local(["x"])


async def test_bridge_through_the_local_app_scores_like_in_process(in_process) -> None:  # type: ignore[no-untyped-def]
    config = load_registry().models[MODEL]
    d = ModalDetector(
        config.spec("remote"),
        ModalSettings(max_batch=3, max_inflight=2),
        connect=local_app_connect(MODEL),
    )
    await d.load()
    try:
        scores = d.predict_batch(TEXTS * 3)  # 12 texts → 4 calls of <= 3
    finally:
        await d.unload()
    expected = [s.score for s in in_process.predict_batch(TEXTS * 3)]
    assert [s.score for s in scores] == pytest.approx(expected, abs=1e-12)
    assert d.version == in_process.version
