"""Training for kind ``fusion``: the mean and spread of each statistic on human texts.

Nothing is weighted (:mod:`deepfake_stream.models.detectors.fusion`). The train split's human
texts give each statistic's mean and standard deviation, and the offset: the fused sum that 1%
of them exceed. AI texts are not used, so the direction of each statistic is fixed by what it
measures, not learned from the corpus; the dev sets are not used at all, so every figure on
them is out of domain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from deepfake_stream.core.errors import ConfigError
from deepfake_stream.models.dataset import Example
from deepfake_stream.models.detectors.fusion import (
    FUSION_FILE,
    STATISTICS,
    Standardisation,
    read_statistics,
)
from deepfake_stream.models.training import TrainedModel

if TYPE_CHECKING:
    from deepfake_stream.models.smollm_ct2 import TextStatistics

DEFAULTS: dict[str, Any] = {"max_chars": 3000, "max_tokens": 128, "target_fpr": 0.01}
BATCH = 16
MIN_HUMAN_TEXTS = 5
"""A spread needs a few texts; the README's artifact is fitted on 400."""


def _scorers(
    member_id: str, registry: Any, opts: dict[str, Any]
) -> tuple[Callable[[Sequence[str]], np.ndarray], str, TextStatistics]:
    """(texts → statistics rows, the member's version, SmolLM2's statistics): the member
    loaded as it serves, and SmolLM2 on CTranslate2 int8, as the detector reads them."""
    from deepfake_stream.models.kinds import build_detector
    from deepfake_stream.models.smollm_ct2 import load_text_statistics

    member = build_detector(registry.resolve(member_id).spec("cpu"))
    asyncio.run(member.load())
    lm = load_text_statistics(max_chars=opts["max_chars"], max_tokens=opts["max_tokens"])

    def rows(texts: Sequence[str]) -> np.ndarray:
        return read_statistics(member, lm, texts, opts["max_chars"])

    return rows, member.version, lm


def train(
    examples: Sequence[Example],
    *,
    options: dict[str, Any],
    seed: int,
    progress: bool,
    registry: Any = None,
) -> TrainedModel:
    """``deepfake-stream train --model small-fusion``: one labelled file's train split."""
    opts = {**DEFAULTS, **options}
    members = opts.get("members") or []
    if len(members) != 1:
        raise ConfigError("kind fusion takes one member (options.members: [tiny-tfidf])")
    if registry is None:
        from deepfake_stream.models.registry import load_registry

        registry = load_registry()
    rows, member_version, lm = _scorers(members[0], registry, opts)
    human = [e.text for e in examples if e.label == 0]
    if len(human) < MIN_HUMAN_TEXTS:
        raise ConfigError(
            f"kind fusion fits on human texts (label 0): it needs at least {MIN_HUMAN_TEXTS} in "
            f"the train split, got {len(human)}; add human texts to the data"
        )
    x = np.vstack(
        [
            rows(human[s : s + BATCH])
            for s in tqdm(range(0, len(human), BATCH), desc="human texts", disable=not progress)
        ]
    )
    x = x[np.all(np.isfinite(x), axis=1)]
    mean, std = x.mean(0), x.std(0)
    partial = Standardisation(
        names=STATISTICS,
        mean=mean,
        std=std,
        offset=0.0,
        options={k: opts[k] for k in ("max_chars", "max_tokens")},
        weights_sha256=lm.digest,
        members={members[0]: member_version},
        numerics=lm.numerics,
    )
    offset = float(np.quantile(partial.fused(x), 1 - opts["target_fpr"]))
    fit = replace(partial, offset=offset)
    exported = Standardisation.from_json(fit.to_json())
    return TrainedModel(
        files={FUSION_FILE: fit.to_json()},
        scorer=lambda texts: exported.score(rows(texts)),
        extra={
            "kind": "fusion",
            "training": {
                "fitted_on": "human texts of the train split (mean, spread, offset); no weights",
                "n_human_texts": len(x),
                "target_fpr": opts["target_fpr"],
                **{k: opts[k] for k in ("max_chars", "max_tokens")},
            },
        },
    )
