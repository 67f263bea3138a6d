"""The per-text steps of the one scoring path (:mod:`deepfake_stream.consumers.batch_scoring`
runs them for a micro-batch, whoever asks: worker, replay, HTTP shim).

1. :func:`prepare` (cheap, no model): normalise the text (``evasion``), detect its language,
   count its words and cut it into windows that cover it.
2. :func:`score_prepared` (in the caller's inference thread): every window of every text in
   one batched ``predict_batch`` call, isolating a failing text; a text's score aggregates
   its windows' scores.
3. :func:`verdict_for`: the verdict fields from both, through the Verdict schema's rule
   (:meth:`schemas.Verdict.from_score`), so a text gets the same verdict whichever way it came
   in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deepfake_stream.consumers.isolate import score_isolating
from deepfake_stream.consumers.redis_store import text_digest
from deepfake_stream.core.liveness import now_ms
from deepfake_stream.models.base import Detector
from deepfake_stream.models.operating_points import decide
from deepfake_stream.models.registry import ModelConfig
from deepfake_stream.schemas import BackendName, RoutedItem, Span, Verdict, utc_now_iso
from deepfake_stream.schemas.verdict import label_for
from deepfake_stream.text import Normalised, Windows, aggregate, normalise, split_windows
from deepfake_stream.text.language import detect_language


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """A text as the model will see it."""

    norm: Normalised
    language: str | None
    words: int
    windows: Windows
    """In offsets of ``norm.text``."""

    def texts(self) -> list[str]:
        return [self.norm.text[s:e] for s, e in self.windows.bounds]

    def original_bounds(self) -> list[tuple[int, int]]:
        """Each window in offsets of the text as received; together they cover all of it
        when the text fitted in its windows."""
        bounds = [self.norm.original_span(s, e) for s, e in self.windows.bounds]
        if self.windows.covered == len(self.norm.text):  # contiguous: include what was removed
            bounds[0] = (0, bounds[0][1])
            bounds[-1] = (bounds[-1][0], len(self.norm.original))
        return bounds

    @property
    def scored_chars(self) -> int:
        """Characters of the text as received inside at least one window."""
        return Windows(bounds=tuple(self.original_bounds())).covered


def prepare(text: str, config: ModelConfig, max_windows: int) -> Prepared:
    norm = normalise(text)
    return Prepared(
        norm=norm,
        language=detect_language(norm.text),
        words=norm.words,
        windows=split_windows(norm.text, config.window_chars, config.window_limit(max_windows)),
    )


def prepare_all(texts: Sequence[str], config: ModelConfig, max_windows: int) -> list[Prepared]:
    """:func:`prepare` for a batch (run it in the inference thread: it is per-character
    Python work, ~tens of ms for a text of 100,000 characters)."""
    return [prepare(t, config, max_windows) for t in texts]


@dataclass(frozen=True, slots=True)
class Scored:
    """One text's outcome: its score (None on failure) and its windows' scores."""

    score: float | None
    error: BaseException | None
    batch_size: int
    """Size of the predict_batch call that scored it."""
    window_scores: tuple[float, ...] = ()


def score_prepared(detector: Detector, prepared: Sequence[Prepared]) -> list[Scored]:
    """Runs in the inference thread: all windows in one call, a failing text isolated."""
    flat = [t for p in prepared for t in p.texts()]
    outcomes = iter(score_isolating(detector, flat))
    scored = []
    for p in prepared:
        mine = [next(outcomes) for _ in p.windows.bounds]
        got = [o.score for o in mine if o.score is not None]
        if len(got) < len(mine):  # the text's first failed window fails it
            failed = next(o for o in mine if o.score is None)
            scored.append(Scored(None, failed.error, failed.batch_size))
            continue
        scores = tuple(float(s.score) for s in got)
        scored.append(Scored(aggregate(scores), None, mine[0].batch_size, scores))
    return scored


def document_scores(
    detector: Detector, config: ModelConfig, texts: Sequence[str], max_windows: int
) -> list[float]:
    """Each text's score as its verdict reports it (normalised, windowed, aggregated): what
    thresholds and operating points are to be measured on. Raises on a text that fails."""
    scores = []
    for s in score_prepared(detector, prepare_all(texts, config, max_windows)):
        if s.score is None:
            raise s.error or RuntimeError("no score")
        scores.append(s.score)
    return scores


def document_scorer(
    max_windows: int,
) -> Callable[[Detector, ModelConfig, Sequence[str]], list[float]]:
    """:func:`document_scores` as the scorer ``evaluate`` and ``calibrate`` measure with."""
    return lambda detector, config, texts: document_scores(detector, config, texts, max_windows)


def reasons_for(prepared: Prepared, config: ModelConfig) -> list[str]:
    """Why a verdict on this text cannot be trusted much (empty: no known reason)."""
    reasons = []
    if prepared.words < config.min_words:
        reasons.append("too_short")
    if not config.supports(prepared.language):
        reasons.append(f"unsupported_language:{prepared.language}")
    return reasons


def verdict_for(
    item: RoutedItem,
    prepared: Prepared,
    scored: Scored,
    *,
    config: ModelConfig,
    model_version: str,
    backend: BackendName,
) -> Verdict:
    """The verdict for one scored routed item. ``scored.window_scores`` may be empty (a
    cached document score): the verdict then has no ``spans``."""
    assert scored.score is not None
    decision = decide(float(scored.score), config, item.operating_point, prepared.words)
    threshold = decision.threshold
    spans = None
    if item.detail and scored.window_scores:
        spans = [
            Span(start=a, end=b, score=s, label=label_for(s, threshold))
            for (a, b), s in zip(prepared.original_bounds(), scored.window_scores, strict=True)
        ]
    return Verdict.from_score(
        score=float(scored.score),
        threshold=threshold,
        confidence=decision.confidence,
        operating_point=decision.operating_point,
        reasons=reasons_for(prepared, config),
        id=item.id,
        model_id=item.routing.model_id,
        model_version=model_version,
        language=prepared.language,
        evasion=list(prepared.norm.evasion),
        scored_chars=prepared.scored_chars,
        windows=len(prepared.windows.bounds),
        spans=spans,
        backend=backend,
        fallback_from=item.routing.fallback_from,
        attempts=item.routing.attempts,
        batch_size=scored.batch_size,
        latency_ms=max(0.0, float(now_ms() - item.routing.first_seen_ms)),
        scored_at=utc_now_iso(),
        replay=item.routing.replay,
        tenant=item.tenant,
        metadata=item.metadata,
        text_sha256=text_digest(item.text),
    )
