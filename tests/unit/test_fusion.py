"""small-fusion: the standardise-and-sum arithmetic and the log-probabilities on hand-made
numbers (fast), then the real tiny-tfidf and CTranslate2 int8 SmolLM2 (slow: the detector
contract, the weights check, and the trainer)."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from deepfake_stream.core.errors import ConfigError, ModelUnavailable
from deepfake_stream.models.artifacts import artifact_dir, save_artifact
from deepfake_stream.models.base import Detector
from deepfake_stream.models.dataset import load_labelled
from deepfake_stream.models.detectors.fusion import (
    FUSION_FILE,
    STATISTICS,
    Standardisation,
    statistics_matrix,
)
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.registry import load_registry
from deepfake_stream.models.smollm_ct2 import log_p_and_prior, log_softmax
from tests.detector_contract import DetectorContract

SMALL = Path(__file__).resolve().parents[1] / "data" / "labelled_small.jsonl"


def fit(mean: list[float], std: list[float], offset: float = 0.0) -> Standardisation:
    return Standardisation(
        names=STATISTICS,
        mean=np.array(mean),
        std=np.array(std),
        offset=offset,
        options={"max_chars": 3000, "max_tokens": 128},
        weights_sha256="0" * 64,
        members={"tiny-tfidf": "1+sha256:000000000000"},
    )


def test_log_p_and_prior_match_a_textbook_log_softmax() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 7)) * 5
    ids = [6, 2, 2, 5]
    ll, prior, target = log_p_and_prior(logits, ids)
    logp = [[x - math.log(sum(math.exp(v) for v in row)) for x in row] for row in logits]
    assert target.tolist() == [2, 2, 5]
    assert ll == pytest.approx([logp[0][2], logp[1][2], logp[2][5]], abs=1e-12)
    # The prior is the prediction after the first token (the separator), for every target.
    assert prior == pytest.approx([logp[0][2], logp[0][2], logp[0][5]], abs=1e-12)


def test_float32_logits_give_the_float64_log_softmax_to_rounding() -> None:
    # Served logits are float32 and their exponentials stay float32 (the speed); summed in
    # float64 they give each target's log p as a float64 log-softmax of every row does.
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(9, 49_152)) * 3).astype(np.float32)
    ids = rng.integers(0, 49_152, size=9).tolist()
    ll, prior, _ = log_p_and_prior(logits, ids)
    full = log_softmax(logits)
    assert ll == pytest.approx(full[np.arange(8), ids[1:]], abs=1e-6, rel=0)
    assert prior == pytest.approx(full[0, ids[1:]], abs=1e-6, rel=0)
    assert ll.dtype == prior.dtype == np.float64


def test_the_fused_score_is_the_sum_of_standardised_statistics_minus_the_offset() -> None:
    f = fit([1.0, 2.0, -3.0], [0.5, 2.0, 1.0], offset=1.5)
    x = np.array([[2.0, 4.0, -1.0], [1.0, 2.0, -3.0]])
    assert f.fused(x) == pytest.approx([2.0 + 1.0 + 2.0, 0.0])
    assert f.score(x) == pytest.approx([1 / (1 + math.exp(-3.5)), 1 / (1 + math.exp(1.5))])


def test_a_statistic_a_text_does_not_have_adds_nothing() -> None:
    f = fit([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    x = statistics_matrix([0.5], np.array([[np.nan, np.nan]]))
    assert f.fused(x) == pytest.approx([0.0]) and np.isfinite(f.score(x)).all()


def test_the_tfidf_score_enters_as_a_logit() -> None:
    x = statistics_matrix([0.5, 0.9], np.zeros((2, 2)))
    assert x[:, 0] == pytest.approx([0.0, math.log(9)])


def test_the_file_round_trips_and_refuses_what_this_version_cannot_read() -> None:
    f = fit([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], offset=0.25)
    again = Standardisation.from_json(json.loads(json.dumps(f.to_json())))
    assert again.to_json() == f.to_json() and again.numerics is None  # written before it
    kernels = replace(f, numerics="oneDNN int8, AuthenticAMD, AVX2")
    assert Standardisation.from_json(kernels.to_json()).numerics == kernels.numerics
    with pytest.raises(ModelUnavailable, match="reads"):
        Standardisation.from_json({**f.to_json(), "names": ["tfidf", "log_p", "cache_gain"]})
    with pytest.raises(ModelUnavailable, match="zero spread"):
        Standardisation.from_json({**f.to_json(), "std": [1.0, 0.0, 1.0]})


def shipped_spec():  # type: ignore[no-untyped-def]
    config = load_registry().models.get("small-fusion")
    assert config is not None, "small-fusion is in the shipped models/registry.yaml"
    return config.spec()


def test_the_kind_takes_exactly_one_member() -> None:
    spec = shipped_spec()
    with pytest.raises(ConfigError, match="one member"):
        build_detector(replace(spec, members=spec.members * 2))


@pytest.mark.slow
class TestSmallFusion(DetectorContract):
    @classmethod
    def make_detector(cls) -> Detector:
        return build_detector(shipped_spec())

    def test_details_carry_the_statistics_and_the_sum(self, loaded: Detector) -> None:
        (score,) = loaded.predict_batch(["The weather today is sunny with a light breeze."])
        assert set(score.details) == {"fused", *STATISTICS}
        assert all(math.isfinite(v) for v in score.details.values())

    def test_a_text_scores_the_same_whatever_it_is_batched_with(self, loaded: Detector) -> None:
        # On oneDNN a padded row's logits move with its batch (by up to 0.015 nats of mean
        # log p on 160 dev texts), so on a CPU every text is its own forward call.
        texts = [e.text for e in load_labelled(SMALL)[:12]]
        together = [s.score for s in loaded.predict_batch(texts)]
        alone = [loaded.predict_batch([t])[0].score for t in texts]
        reversed_ = [s.score for s in loaded.predict_batch(texts[::-1])][::-1]
        assert together == alone == reversed_

    def test_an_empty_text_has_no_smollm2_statistics(self, loaded: Detector) -> None:
        (score,) = loaded.predict_batch([""])
        assert score.details["cache_gain"] is None and score.details["log_p"] is None
        assert 0.0 <= score.score <= 1.0


@pytest.mark.slow
async def test_weights_other_than_the_fitted_ones_refuse_to_load(tmp_path: Path) -> None:
    spec = shipped_spec()
    shipped = artifact_dir(spec.artifact)
    doc = json.loads((shipped / FUSION_FILE).read_text())
    save_artifact(
        tmp_path / "changed",
        model_id="small-fusion",
        release=spec.version,
        files={FUSION_FILE: {**doc, "weights_sha256": "f" * 64}},
    )
    detector = build_detector(replace(spec, artifact=str(tmp_path / "changed")))
    with pytest.raises(ModelUnavailable, match="retrain it"):
        await detector.load()
    assert not detector.ready


def member_version() -> str:
    from deepfake_stream.models.artifacts import load_verified

    member = load_registry().resolve("tiny-tfidf")
    return load_verified(member.artifact or member.model_id).versioned(member.version)


async def served_scores(spec, texts: list[str]) -> list[float]:  # type: ignore[no-untyped-def]
    detector = build_detector(spec)
    await detector.load()
    try:
        return [s.score for s in detector.predict_batch(texts)]
    finally:
        await detector.unload()


@pytest.mark.slow
def test_training_fits_on_human_texts_only_and_serves_what_it_exported(tmp_path: Path) -> None:
    from deepfake_stream.models.training.fusion import train

    spec = shipped_spec()
    options = {"members": ["tiny-tfidf"], "max_chars": 3000, "max_tokens": 128}
    examples = load_labelled(SMALL)
    both = train(examples, options=options, seed=1, progress=False)
    humans = train([e for e in examples if e.label == 0], options=options, seed=1, progress=False)
    assert both.files[FUSION_FILE] == humans.files[FUSION_FILE]  # AI texts change nothing
    assert both.files[FUSION_FILE]["members"] == {"tiny-tfidf": member_version()}
    with pytest.raises(ConfigError, match="human texts"):
        train([e for e in examples if e.label == 1], options=options, seed=1, progress=False)

    # Served from the written artifact, a text scores what the trainer's scorer said.
    save_artifact(
        tmp_path / "trained", model_id="small-fusion", release=spec.version, files=both.files
    )
    texts = [e.text for e in examples[:6]]
    served = asyncio.run(served_scores(replace(spec, artifact=str(tmp_path / "trained")), texts))
    assert served == pytest.approx(both.scorer(texts).tolist(), abs=1e-9)


def test_small_fusion_is_the_shipped_default_in_settings_registry_and_compose() -> None:
    import yaml

    from deepfake_stream.core.settings import ModelSettings

    shipped = ModelSettings.model_fields["default"].default
    assert shipped == "small-fusion"
    assert load_registry(default_model=shipped).resolve(None).model_id == "small-fusion"
    compose = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text()
    )
    values = [
        s.get("environment", {}).get("MODELS_DEFAULT")
        for s in compose["services"].values()
        if isinstance(s.get("environment"), dict)
    ]
    assert set(values) - {None} == {"${MODELS_DEFAULT:-small-fusion}"}


@pytest.mark.slow
async def test_a_device_ctranslate2_cannot_use_refuses_to_load_with_the_reason() -> None:
    """The GPU worker's path on a machine without CUDA: the model is not loaded there (the
    worker routes around it, to the CPU worker), and the error says why."""
    from deepfake_stream.core.settings import ModelSettings
    from deepfake_stream.models.smollm_ct2 import ctranslate2

    # Imported as the service imports it (kernels pinned first): the process's backend.
    if ctranslate2(ModelSettings().int8_kernels).get_cuda_device_count() > 0:
        pytest.skip("this machine has a CUDA device: the GPU path would load")
    detector = build_detector(replace(shipped_spec(), device="cuda"))
    with pytest.raises(ModelUnavailable, match="CTranslate2 cannot run SmolLM2 on cuda"):
        await detector.load()
    assert not detector.ready


@pytest.mark.slow
async def test_registry_options_that_differ_from_the_fitted_ones_warn_and_are_not_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = shipped_spec()
    text = "The committee will reconvene next week to review the proposal in detail."
    edited = build_detector(replace(spec, options={**spec.options, "max_tokens": 8}))
    with caplog.at_level("WARNING", logger="deepfake_stream.models.detectors.fusion"):
        await edited.load()
    try:
        assert "max_tokens=8 differs from the fitted 128" in caplog.text
        (score,) = edited.predict_batch([text])
    finally:
        await edited.unload()
    shipped = build_detector(spec)
    await shipped.load()
    try:
        assert shipped.predict_batch([text])[0].score == pytest.approx(score.score, abs=1e-9)
    finally:
        await shipped.unload()


def test_the_registry_hands_a_detector_the_numerics_it_was_calibrated_with() -> None:
    config = load_registry().resolve("small-fusion")
    recorded = (config.calibration or {}).get("numerics")
    assert config.spec().calibrated_numerics == recorded
    edited = replace(config, calibration={**(config.calibration or {}), "numerics": "x"})
    assert edited.spec().calibrated_numerics == "x"


@pytest.mark.slow
async def test_a_detector_calibrated_on_other_kernels_warns_and_says_what_to_do(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from deepfake_stream.models.smollm_ct2 import int8_numerics

    spec = replace(shipped_spec(), calibrated_numerics="MKL int8, SomeOtherVendor, AVX512F")
    detector = build_detector(spec)
    with caplog.at_level("WARNING", logger="deepfake_stream.models.detectors.fusion"):
        await detector.load()
    try:
        assert "calibrated where SmolLM2 ran on MKL int8, SomeOtherVendor" in caplog.text
        assert "run it on those kernels (MODELS_INT8_KERNELS=avx2" in caplog.text
        assert detector.metadata()["numerics"] == int8_numerics()
    finally:
        await detector.unload()
    caplog.clear()
    same = build_detector(replace(spec, calibrated_numerics=int8_numerics()))
    with caplog.at_level("WARNING", logger="deepfake_stream.models.detectors.fusion"):
        await same.load()
    await same.unload()
    assert "calibrated where" not in caplog.text


@pytest.mark.slow
async def test_statistics_standardised_on_other_kernels_warn_at_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = shipped_spec()
    doc = json.loads((artifact_dir(spec.artifact) / FUSION_FILE).read_text())
    save_artifact(
        tmp_path / "other",
        model_id="small-fusion",
        release=spec.version,
        files={FUSION_FILE: {**doc, "numerics": "MKL int8, GenuineIntel, AVX512F"}},
    )
    detector = build_detector(replace(spec, artifact=str(tmp_path / "other")))
    with caplog.at_level("WARNING", logger="deepfake_stream.models.detectors.fusion"):
        await detector.load()
    await detector.unload()
    assert "standardised where SmolLM2 ran on MKL int8, GenuineIntel, AVX512F" in caplog.text
    assert "deepfake-stream train --model small-fusion" in caplog.text


@pytest.mark.slow
def test_batched_calls_as_a_gpu_makes_them_read_the_same_statistics_on_a_cpu() -> None:
    # A GPU scores sub-batches in one call (max_batch, parallel 1); on a CPU that path pads,
    # which moves oneDNN's rows a little, and must still read every text, in order.
    from deepfake_stream.models.smollm_ct2 import load_text_statistics

    lm = load_text_statistics(max_chars=3000, max_tokens=128)
    assert lm.max_batch == 1 and lm.parallel >= 1
    texts = [e.text for e in load_labelled(SMALL)[:10]] + [""]
    alone = lm(texts)
    batched = replace(lm, max_batch=4, parallel=1)(texts)
    assert np.isnan(alone[-1]).all() and np.isnan(batched[-1]).all()
    np.testing.assert_allclose(batched[:-1], alone[:-1], atol=0.05)
