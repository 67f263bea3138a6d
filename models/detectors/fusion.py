"""Fusion: ``tiny-tfidf``'s verdict plus two SmolLM2 statistics, standardised and summed.

Every head fitted on SmolLM2 statistics took the direction of the set it was fitted on and
lost the others (README, "Normalising by a prior"); a sum does not. Per text (its first
``max_chars`` characters) this kind reads three numbers, each oriented higher = AI:

- ``tfidf``: the member model's score (``options.members``, ``tiny-tfidf``), as a logit;
- ``cache_gain``: SmolLM2's mean log p minus an in-text prior, over the first ``max_tokens``
  tokens (:func:`~deepfake_stream.models.detectors.curvature.cache_gains`): what the model
  predicts beyond common words and the text repeating itself;
- ``log_p``: SmolLM2's mean token log-probability over the same tokens,

standardises each by the mean and spread of *human* texts (``fusion.json``, fitted on the
corpus train split's human texts only, :mod:`deepfake_stream.models.training.fusion`), and
adds them. Nothing is weighted, so no direction is learned from one set. The score is
``sigmoid(sum - offset)``, where ``offset`` is the sum that 1% of those human texts exceed;
the operating points come from ``deepfake-stream calibrate``, as for every model.

SmolLM2 runs on CTranslate2 with int8 weights (:mod:`deepfake_stream.models.smollm_ct2`),
converted at load and checked against the ``model.bin`` sha256 recorded in ``fusion.json``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfake_stream.core.errors import ConfigError, ModelUnavailable
from deepfake_stream.models.base import BaseDetector, Detector, DetectorSpec, Score
from deepfake_stream.models.detectors.ensemble import logit
from deepfake_stream.models.heads import sigmoid
from deepfake_stream.models.kinds import DetectorKind
from deepfake_stream.models.shared import SHARED
from deepfake_stream.models.smollm_ct2 import TextStatistics, load_text_statistics, same_kernels

log = logging.getLogger(__name__)

FUSION_FILE = "fusion.json"
STATISTICS = ("tfidf", *TextStatistics.NAMES)


@dataclass(frozen=True, kw_only=True)
class Standardisation:
    """What ``fusion.json`` holds: the human texts' mean and spread of each statistic, the
    offset, and what the statistics were read with."""

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    offset: float
    options: dict[str, Any]
    """``max_chars``, ``max_tokens``: how the statistics were read."""
    weights_sha256: str
    """sha256 of the CTranslate2 int8 ``model.bin`` the statistics came from."""
    members: dict[str, str]
    """Member model id → the version fitted against."""
    numerics: str | None = None
    """The int8 kernels the statistics were read with (:func:`~deepfake_stream.models.
    smollm_ct2.int8_numerics`): on other kernels their mean and spread differ (on one AMD
    machine, MKL's mean ``cache_gain`` of 60 human texts 7.08 against oneDNN's 7.94). None
    in files written before it was recorded."""

    def fused(self, x: np.ndarray) -> np.ndarray:
        """The sum of standardised statistics of each row of ``x`` (columns: ``names``).
        A statistic that could not be read (NaN: a text with no tokens) adds nothing."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        return np.asarray(np.nansum(z, axis=1))

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(sigmoid(self.fused(x) - self.offset))

    def to_json(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "offset": float(self.offset),
            "options": dict(self.options),
            "weights_sha256": self.weights_sha256,
            "members": dict(self.members),
            **({"numerics": self.numerics} if self.numerics else {}),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Standardisation:
        names = tuple(doc["names"])
        mean, std = np.asarray(doc["mean"], dtype=np.float64), np.asarray(doc["std"], np.float64)
        if names != STATISTICS or mean.shape != (len(names),) or std.shape != mean.shape:
            raise ModelUnavailable(
                f"{FUSION_FILE} reads {list(names)}; this version reads {list(STATISTICS)}"
            )
        if not (np.all(np.isfinite(mean)) and np.all(std > 0)):
            raise ModelUnavailable(f"{FUSION_FILE} has a non-finite mean or a zero spread")
        return cls(
            names=names,
            mean=mean,
            std=std,
            offset=float(doc["offset"]),
            options=dict(doc["options"]),
            weights_sha256=str(doc["weights_sha256"]),
            members=dict(doc["members"]),
            numerics=doc.get("numerics"),
        )


def statistics_matrix(tfidf_scores: Sequence[float], lm: np.ndarray) -> np.ndarray:
    """Rows of :data:`STATISTICS` from the member's scores and SmolLM2's (cache_gain, log_p)."""
    return np.column_stack([logit(np.asarray(tfidf_scores)), lm])


def read_statistics(
    member: Detector, lm: TextStatistics, texts: Sequence[str], max_chars: int
) -> np.ndarray:
    """Rows of :data:`STATISTICS` of each text's first ``max_chars`` characters: how the
    detector reads a text, and how its trainer reads the human texts it fits on."""
    clipped = [t[:max_chars] for t in texts]
    return statistics_matrix([s.score for s in member.predict_batch(clipped)], lm(clipped))


class FusionDetector(BaseDetector):
    """Detector kind ``fusion`` (registry options: ``members``, one registered model id;
    ``max_batch``, texts per SmolLM2 call on a GPU (a CPU scores one per call, a call per
    core at once); ``num_threads``, ``cache_dir``)."""

    def __init__(self, spec: DetectorSpec) -> None:
        if len(spec.members) != 1:
            raise ConfigError(f"{spec.model_id}: kind fusion takes one member (options.members)")
        super().__init__(spec)
        self._member: Detector | None = None
        self._lm: TextStatistics | None = None
        self._fit: Standardisation | None = None

    async def load_model(self) -> str:
        from deepfake_stream.models.artifacts import load_verified

        if not self.spec.artifact:
            raise ModelUnavailable(f"{self.spec.model_id}: no artifact configured")
        manifest = await asyncio.to_thread(load_verified, self.spec.artifact)
        fit = Standardisation.from_json(manifest.read_json(FUSION_FILE))
        if [s.model_id for s in self.spec.members] != list(fit.members):
            raise ConfigError(
                f"{self.spec.model_id}: registry members "
                f"{[s.model_id for s in self.spec.members]} differ from the fitted ones "
                f"{list(fit.members)}; retrain it"
            )
        options = self.spec.options
        for key, fitted in fit.options.items():
            if key in options and options[key] != fitted:
                # The statistics are read as they were fitted; a registry edit needs a retrain.
                log.warning(
                    "%s: registry option %s=%r differs from the fitted %r, which is used; "
                    "retrain it to apply the change",
                    self.spec.model_id,
                    key,
                    options[key],
                    fitted,
                )
        lm = await asyncio.to_thread(
            load_text_statistics,
            device=self.spec.device,
            max_chars=int(fit.options["max_chars"]),
            max_tokens=int(fit.options["max_tokens"]),
            max_batch=int(options.get("max_batch", 16)),
            num_threads=options.get("num_threads"),
            cache_dir=options.get("cache_dir"),
        )
        if lm.digest != fit.weights_sha256:
            raise ModelUnavailable(
                f"{self.spec.model_id}: the CTranslate2 int8 SmolLM2 (sha256 {lm.digest[:12]}) "
                f"is not the one it was fitted on ({fit.weights_sha256[:12]}): the installed "
                "ctranslate2 or transformers converts differently; retrain it "
                f"(deepfake-stream train --model {self.spec.model_id})"
            )
        for what, fitted in (
            ("standardised", fit.numerics),
            ("calibrated", self.spec.calibrated_numerics),
        ):
            if fitted and not same_kernels(fitted, lm.numerics):
                log.warning(
                    "%s: it was %s where SmolLM2 ran on %s; here it runs on %s, whose "
                    "scores differ (README, 'Scores depend on the CPU'), so the model card's "
                    "FPRs do not hold here: run it on those kernels (MODELS_INT8_KERNELS=avx2, "
                    "the default, on an x86 CPU with AVX2) or retrain and re-calibrate it on "
                    "these (deepfake-stream train --model %s, then make quality)",
                    self.spec.model_id,
                    what,
                    fitted,
                    lm.numerics,
                    self.spec.model_id,
                )
        self.numerics = lm.numerics
        # Shared: a worker that also serves the member holds one copy of it, not two.
        member = await SHARED.acquire(self.spec.members[0])
        if fit.members[member.spec.model_id] != member.version:
            log.warning(
                "%s: member %s is %s, it was fitted against %s; retrain it",
                self.spec.model_id,
                member.spec.model_id,
                member.version,
                fit.members[member.spec.model_id],
            )
        self._member, self._lm, self._fit = member, lm, fit
        return manifest.versioned(self.spec.version)

    def predict(self, texts: Sequence[str]) -> list[Score]:
        fit = self.loaded(self._fit)
        x = read_statistics(
            self.loaded(self._member), self.loaded(self._lm), texts, int(fit.options["max_chars"])
        )
        return [
            Score(
                score=float(p),
                details={
                    "fused": round(float(f), 4),
                    # None: a statistic a text too short to tokenise does not have
                    **{
                        n: round(float(v), 6) if np.isfinite(v) else None
                        for n, v in zip(fit.names, row, strict=True)
                    },
                },
            )
            for p, f, row in zip(fit.score(x), fit.fused(x), x, strict=True)
        ]

    async def unload_model(self) -> None:
        member, self._member, self._lm, self._fit = self._member, None, None, None
        if member is not None:
            await SHARED.release(member)


KIND = DetectorKind(
    name="fusion",
    detector=FusionDetector,
    trainer="deepfake_stream.models.training.fusion:train",
    package_weights="deepfake_stream.models.smollm:gguf_path",
)
