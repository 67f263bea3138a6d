"""The one verdict-building path (consumers/scoring.py) on the real tiny-tfidf detector."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from deepfake_stream.consumers.scoring import document_scores, prepare, score_prepared, verdict_for
from deepfake_stream.models.base import Detector
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.registry import ModelConfig, Registry, load_registry
from deepfake_stream.routing.decide import choose_model
from deepfake_stream.schemas import InputItem, RoutedItem, Verdict
from tests.texts import HUMAN, TURKISH, ai_english, evade, long_human_with_ai_section


@pytest.fixture(scope="module")
def config() -> ModelConfig:
    return load_registry().resolve("tiny-tfidf")


@pytest.fixture(scope="module")
def detector(config: ModelConfig) -> Detector:
    d = build_detector(config.spec())
    asyncio.run(d.load())
    return d


def verdict(
    text: str,
    config: ModelConfig,
    detector: Detector,
    *,
    detail: bool = False,
    windows: int = 64,
    operating_point: str | None = None,
) -> Verdict:
    item = RoutedItem.first_hop(
        InputItem(id="x", text=text, detail=detail, operating_point=operating_point),
        model_id=config.model_id,
        target="cpu",
        chain=[],
        first_seen_ms=0,
        trace={},
    )
    prepared = prepare(text, config, windows)
    (scored,) = score_prepared(detector, [prepared])
    return verdict_for(
        item, prepared, scored, config=config, model_version=detector.version, backend="cpu"
    )


def test_long_human_text_with_one_ai_section_is_flagged_by_that_section(
    config: ModelConfig, detector: Detector
) -> None:
    text, start, end = long_human_with_ai_section()
    assert len(text) == 60_000
    # At the sensitive operating point (5% FPR on human texts): the point a deployment that
    # wants mixed documents caught would pick.
    v = verdict(text, config, detector, detail=True, operating_point="sensitive")
    assert v.scored_chars == 60_000
    assert v.windows == 39  # 3,000 characters, half overlapping
    assert v.spans is not None and len(v.spans) == v.windows
    assert v.spans[0].start == 0 and v.spans[-1].end == 60_000
    overlapping = [s for s in v.spans if s.start < end and s.end > start]
    outside = [s for s in v.spans if s not in overlapping]
    within = [s for s in v.spans if start <= s.start and s.end <= end]
    assert within, "windows 1,500 apart: one lies inside the 3,000-character section"
    assert min(s.score for s in within) > max(s.score for s in outside)
    assert v.label == "ai" and v.score == max(s.score for s in v.spans)
    assert all(s.label == "human" for s in outside)
    # Without the section, the same long text is human.
    human = verdict(text[:start] + text[end:], config, detector, operating_point="sensitive")
    assert human.label == "human" and human.scored_chars == 57_000


def test_spans_only_with_detail(config: ModelConfig, detector: Detector) -> None:
    v = verdict(HUMAN * 3, config, detector)
    assert v.spans is None and v.windows == 3 and v.scored_chars == len(HUMAN) * 3


def test_a_short_text_is_one_window_scored_as_before(
    config: ModelConfig, detector: Detector
) -> None:
    text = ai_english()
    v = verdict(text, config, detector)
    assert v.windows == 1 and v.scored_chars == len(text)
    assert v.score == detector.predict_batch([text])[0].score


def test_evaded_ai_text_gets_the_clean_texts_label(config: ModelConfig, detector: Detector) -> None:
    clean = ai_english()
    attacked = evade(clean)
    v_clean = verdict(clean, config, detector)
    v = verdict(attacked, config, detector, detail=True)
    assert v.label == v_clean.label and v.confidence == v_clean.confidence
    assert v.score == pytest.approx(v_clean.score, abs=1e-6)
    assert v.evasion == ["zero_width", "homoglyph"] and v_clean.evasion == []
    assert v.scored_chars == len(attacked)
    assert v.spans is not None and (v.spans[0].start, v.spans[-1].end) == (0, len(attacked))


def test_too_short_is_low_confidence(config: ModelConfig, detector: Detector) -> None:
    v = verdict("The committee will reconvene next week to review it.", config, detector)
    assert v.reasons == ["too_short"] and v.confidence == "low"
    assert v.language == "en"
    long_enough = verdict(HUMAN, config, detector)
    # Without a reason the confidence is the score's calibrated band (this text: medium).
    assert long_enough.reasons == [] and long_enough.confidence in ("high", "medium")


def test_unsupported_language_is_low_confidence(config: ModelConfig, detector: Detector) -> None:
    v = verdict(TURKISH, replace(config, min_words=0), detector)
    assert v.language == "tr"
    assert v.reasons == ["unsupported_language:tr"] and v.confidence == "low"


def test_min_words_comes_from_the_registry(config: ModelConfig, detector: Detector) -> None:
    v = verdict("Four words only here.", replace(config, min_words=3), detector)
    assert v.reasons == []


def test_routing_by_language_when_model_id_is_null(config: ModelConfig) -> None:
    turkish = replace(config, model_id="tr-model", languages=("tr",))
    anything = replace(config, model_id="any-model", languages=None)
    registry = Registry(
        models={"tiny-tfidf": config, "any-model": anything, "tr-model": turkish},
        default_model="tiny-tfidf",
    )
    assert choose_model(registry, None, TURKISH).model_id == "tr-model"
    assert choose_model(registry, None, HUMAN).model_id == "tiny-tfidf"
    assert choose_model(registry, "tiny-tfidf", TURKISH).model_id == "tiny-tfidf"
    without_tr = Registry(
        models={"tiny-tfidf": config, "any-model": anything}, default_model="tiny-tfidf"
    )
    assert choose_model(without_tr, None, TURKISH).model_id == "any-model"
    same = Registry(models={"tiny-tfidf": config}, default_model="tiny-tfidf")
    assert choose_model(same, None, TURKISH).model_id == "tiny-tfidf"


def test_document_scores_are_the_verdicts_scores(config: ModelConfig, detector: Detector) -> None:
    texts = [HUMAN * 3, evade(ai_english()), TURKISH]
    want = [verdict(t, config, detector).score for t in texts]
    assert document_scores(detector, config, texts, 64) == want
