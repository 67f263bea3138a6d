"""Cross-set study for the fast tier (issue 8): do cheap features carry to unseen domains?

Each variant is fitted on the corpus's train split plus one dev set and scored on the other
dev set (and on the corpus's held-out split), in both directions, so no figure is on text
the variant was fitted on. Pairs (``<pair>-human`` / ``<pair>-ai``) and corpus topics stay
on one side of the folds that choose the threshold: it is the 1%-FPR point of out-of-fold
scores on the fitting side's human texts, never of the test set.

Variants (all logistic regression, balanced classes):

- ``tfidf-corpus``: today's ``tiny-tfidf`` features (character 1-4-grams inside words and
  word 1-2-grams), fitted on the corpus only: the baseline;
- ``tfidf``: the same features, fitted on the corpus plus the other dev set;
- ``function-words``: frequencies of the words in at least 5% of the fitting texts
  (function words in each language): style without topic words;
- ``masked``: word 1-3-grams of the text with every other word replaced by its shape
  (``W``, ``C`` capitalised, ``D`` digits), so the grammar of a sentence is kept and its
  topic is not;
- ``word-length``: seven numbers per text, no words at all: the mean and spread of its word
  lengths (runs of letters) and the share of words of at least 3, 5, 7, 9 and 11 letters;
- ``tfidf+word-length``: ``tiny-tfidf``'s features and the word-length block (standardised)
  in one logistic regression;
- ``stylometry``: 29 numbers per text, no words: the word-length block plus sentence
  lengths and their spread (burstiness), vocabulary richness (moving type-token ratio over
  50 words, hapax share of the first 200), punctuation and contractions per word, capitals,
  digits, paragraph length and the marks of unedited typing (a lowercase sentence start, no
  space after a full stop, a space before a comma);
- ``stylometry-gbm``: the same numbers, gradient-boosted trees instead of a line;
- ``minilm-corpus``: ``medium-embedding``'s recipe (all-MiniLM-L6-v2, the mean of layers
  1-6 over the first 256 tokens, standardised, logistic head at its cross-validated C=0.01),
  fitted on the corpus only, scored on the first window: the served model's baseline;
- ``minilm``: the same, fitted on the corpus plus the other dev set: can ``medium-embedding``
  be fixed by training on more than one generator and domain? (MiniLM's pooled states are
  cached under ``~/.cache/deepfake-stream``; the first run extracts ~6,000 texts, ~5 min);
- ``tfidf-in-domain``: not cross-set: today's features fitted on the train side of all three
  sets (each dev set split 80/20 like the corpus, stratified, pairs kept together) and scored
  on their held-out 20%: what seeing a domain in training buys on that domain.

Needs the shared data next to the repository and scikit-learn (the ``[server]`` extra)::

    python tools/fast_tier_study.py [--data-dir ../shared/data] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from deepfake_stream.models.dataset import DEFAULT_SEED, Example, load_labelled, select
from deepfake_stream.models.metrics import auroc
from deepfake_stream.models.training.tfidf import DEFAULTS, build_pipeline

TOKEN = re.compile(r"\w+|[^\w\s]")
LETTERS = re.compile(r"[^\W\d_]+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
PUNCTUATION = [",", ";", ":", "\u2014", "-", "(", '"', "'", "!", "?"]
CONTRACTION = re.compile(r"\w(?:n't|'s|'re|'ve|'ll|'d|'m)\b", re.IGNORECASE)
UNEDITED = [re.compile(r"[.!?]\s+[a-z]"), re.compile(r"[a-z][.,][A-Za-z]"), re.compile(r"\s[,.]")]
VARIANTS = [
    "tfidf-corpus",
    "tfidf",
    "function-words",
    "masked",
    "word-length",
    "tfidf+word-length",
    "stylometry",
    "stylometry-gbm",
    "minilm-corpus",
    "minilm",
    "tfidf-in-domain",
]
MINILM_LAYERS = [1, 2, 3, 4, 5, 6]
MINILM_C = 0.01
FPR = 0.01


def pair_group(e: Example) -> str:
    """Corpus topics, else the pair an OOD id names (``<pair>-human`` and ``<pair>-ai``)."""
    if e.topic:
        return e.group
    return "pair:" + re.sub(r"-(human|ai)$", "", e.id or f"line{e.line}")


def common_words(texts: list[str], min_share: float) -> list[str]:
    df: Counter[str] = Counter()
    for t in texts:
        df.update({w.lower() for w in TOKEN.findall(t)})
    return sorted(w for w, k in df.items() if k / len(texts) >= min_share)


def pair_split(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """80/20, stratified by label, pairs and topics on one side (the corpus's own seed)."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = [e.label for e in examples]
    folds = StratifiedGroupKFold(5, shuffle=True, random_state=DEFAULT_SEED)
    train, test = next(folds.split(examples, labels, [pair_group(e) for e in examples]))
    return [examples[i] for i in train], [examples[i] for i in test]


def word_lengths(texts: list[str]) -> np.ndarray:
    """Per text: mean and spread of word lengths, share of words of >= 3, 5, 7, 9, 11 letters."""
    rows = []
    for t in texts:
        n = np.array([len(w) for w in LETTERS.findall(t)] or [0])
        rows.append([n.mean(), n.std(), *((n >= k).mean() for k in (3, 5, 7, 9, 11))])
    return np.array(rows)


def stylometry(texts: list[str]) -> np.ndarray:
    """Per text, 29 numbers of style (see the module docstring); no word is looked at."""
    rows = []
    for t in texts:
        words = LETTERS.findall(t)
        n = max(len(words), 1)
        sentences = [len(LETTERS.findall(s)) for s in SENTENCE_END.split(t.strip())]
        sl = np.array([k for k in sentences if k] or [0])
        low = [w.lower() for w in words]
        mattr = [len(set(low[i : i + 50])) / 50 for i in range(0, max(len(low) - 49, 1), 10)]
        head = low[:200]
        counts = Counter(head)
        paragraphs = [p for p in re.split(r"\n\s*\n|\n", t) if p.strip()]
        rows.append(
            [
                *word_lengths([t])[0],
                sl.mean(),
                sl.std() / max(sl.mean(), 1.0),
                (sl > 30).mean(),
                float(np.mean(mattr)) if len(low) >= 50 else len(set(low)) / n,
                sum(1 for c in counts.values() if c == 1) / max(len(head), 1),
                *(t.count(p) / n for p in PUNCTUATION),
                len(CONTRACTION.findall(t)) / n,
                sum(w[0].isupper() for w in words[1:]) / n,
                sum(ch.isdigit() for ch in t) / n,
                n / max(len(paragraphs), 1),
                *(len(u.findall(t)) / n for u in UNEDITED),
            ]
        )
    return np.array(rows, dtype=float)


@functools.cache
def _pooling() -> Any:
    from deepfake_stream.models.training.embedding import CachedPooling

    return CachedPooling({})


def minilm_features(texts: Any) -> np.ndarray:
    """``medium-embedding``'s features, from the training cache (extracted on a miss)."""
    from deepfake_stream.models.detectors.embedding import layer_features

    return layer_features(_pooling().pooled(list(texts)), MINILM_LAYERS)


def make_variant(name: str, texts: list[str]) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    lengths = make_pipeline(FunctionTransformer(word_lengths), StandardScaler())
    if name.startswith("minilm"):
        pooled = FunctionTransformer(minilm_features)
        clf = LogisticRegression(C=MINILM_C, class_weight="balanced", max_iter=5000)
        return Pipeline([("features", pooled), ("scale", StandardScaler()), ("clf", clf)])
    if name == "stylometry":
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000)
        style = make_pipeline(FunctionTransformer(stylometry), StandardScaler())
        return Pipeline([("features", style), ("clf", clf)])
    if name == "stylometry-gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier

        gbm = HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.05, class_weight="balanced", random_state=0
        )
        return Pipeline([("features", FunctionTransformer(stylometry)), ("clf", gbm)])
    if name == "word-length":
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000)
        return Pipeline([("features", lengths), ("clf", clf)])
    if name == "tfidf+word-length":
        tfidf = build_pipeline(DEFAULTS, 10.0)
        union = FeatureUnion([("tfidf", tfidf.named_steps["features"]), ("lengths", lengths)])
        return Pipeline([("features", union), ("clf", tfidf.named_steps["clf"])])
    if name.startswith("tfidf"):
        return build_pipeline(DEFAULTS, 10.0)
    vocab = common_words(texts, 0.05)
    known = set(vocab)

    def words(t: str) -> str:
        return " ".join(w.lower() for w in TOKEN.findall(t))

    def masked(t: str) -> str:
        def shape(w: str) -> str:
            low = w.lower()
            if low in known:
                return low
            return "D" if w.isdigit() else ("C" if w[0].isupper() else "W")

        return " ".join(shape(w) for w in TOKEN.findall(t))

    common: dict[str, Any] = {"token_pattern": r"\S+", "lowercase": False, "sublinear_tf": True}
    if name == "function-words":
        vec = TfidfVectorizer(preprocessor=words, vocabulary=vocab, **common)
    elif name == "masked":
        vec = TfidfVectorizer(
            preprocessor=masked, ngram_range=(1, 3), min_df=3, max_features=30_000, **common
        )
    else:
        raise ValueError(name)
    clf = LogisticRegression(C=10.0, class_weight="balanced", max_iter=3000)
    return Pipeline([("features", vec), ("clf", clf)])


def threshold(name: str, train: list[Example]) -> tuple[float, float]:
    """(1%-FPR threshold, AUROC) of out-of-fold scores on the fitting side, pairs grouped."""
    from sklearn.model_selection import StratifiedGroupKFold

    texts = [e.text for e in train]
    y = np.array([e.label for e in train])
    scores = np.zeros(len(y))
    folds = StratifiedGroupKFold(4, shuffle=True, random_state=1)
    for tr, va in folds.split(texts, y, [pair_group(e) for e in train]):
        fit_texts = [texts[i] for i in tr]
        model = make_variant(name, fit_texts).fit(fit_texts, y[tr])
        scores[va] = model.predict_proba([texts[i] for i in va])[:, 1]
    return float(np.quantile(scores[y == 0], 1 - FPR)), auroc(y, scores)


def measure(scores: np.ndarray, examples: list[Example], thr: float) -> dict[str, Any]:
    y = np.array([e.label for e in examples])

    def cell(m: np.ndarray) -> dict[str, Any]:
        yy, ss = y[m], scores[m]
        return {
            "n": int(m.sum()),
            "auroc": round(auroc(yy, ss), 3),
            "fpr_at_threshold": round(float((ss[yy == 0] >= thr).mean()), 3),
            "tpr_at_threshold": round(float((ss[yy == 1] >= thr).mean()), 3),
        }

    out = cell(np.ones(len(y), dtype=bool))
    domains = sorted({str(e.fields.get("domain")) for e in examples if e.fields.get("domain")})
    out["groups"] = {
        d: cell(np.array([e.fields.get("domain") == d for e in examples])) for d in domains
    }
    return out


def load_study_sets(
    d: Path,
) -> tuple[list[Example], list[Example], dict[str, list[Example]]]:
    """The corpus's train and test splits, and the two dev sets by name."""
    corpus = load_labelled(d / "human_ai_corpus.jsonl")
    sets = {
        "fastdetect_family": load_labelled(d / "ood_dev" / "fastdetect_family.jsonl"),
        "outfox": load_labelled(d / "ood_dev" / "outfox.jsonl"),
    }
    return select(corpus, "train"), select(corpus, "test"), sets


def result_line(name: str, test_name: str, row: dict[str, Any], width: int = 15) -> str:
    """One line of results: AUROC, FPR / TPR at the threshold, and AUROC per domain."""
    return (
        f"{name:{width}} -> {test_name:18} AUROC {row['auroc']:.3f}  "
        f"FPR {row['fpr_at_threshold']:.3f}  TPR {row['tpr_at_threshold']:.3f}  "
        + "  ".join(f"{g} {c['auroc']:.2f}" for g, c in row["groups"].items())
    )


def in_domain(
    corpus_train: list[Example],
    corpus_test: list[Example],
    sets: dict[str, list[Example]],
    lines: TextIO,
) -> dict[str, Any]:
    halves = {k: pair_split(v) for k, v in sets.items()}
    train = corpus_train + [e for tr, _ in halves.values() for e in tr]
    thr, oof = threshold("tfidf", train)
    texts = [e.text for e in train]
    model = make_variant("tfidf", texts).fit(texts, np.array([e.label for e in train]))
    tests = {"corpus_test": corpus_test, **{k: te for k, (_, te) in halves.items()}}
    out: dict[str, Any] = {"threshold": round(thr, 4), "fitting_side_oof_auroc": round(oof, 3)}
    for k, test in tests.items():
        out[k] = row = measure(model.predict_proba([e.text for e in test])[:, 1], test, thr)
        print(result_line("tfidf-in-domain", k + " (held out)", row), file=lines)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data", type=Path)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument(
        "--variant",
        action="append",
        choices=VARIANTS,
        help="repeatable; default all",
    )
    args = parser.parse_args(argv)
    corpus_train, corpus_test, sets = load_study_sets(args.data_dir)
    results: dict[str, Any] = {}
    lines = sys.stderr if args.json else sys.stdout  # --json: stdout holds only the JSON
    for name in args.variant or VARIANTS:
        results[name] = {}
        if name == "tfidf-in-domain":
            results[name] = in_domain(corpus_train, corpus_test, sets, lines)
            continue
        for test_name, test in sets.items():
            fit_dev = (
                []
                if name.endswith("-corpus")
                else next(v for k, v in sets.items() if k != test_name)
            )
            train = corpus_train + fit_dev
            thr, oof = threshold(name, train)
            texts = [e.text for e in train]
            model = make_variant(name, texts).fit(texts, np.array([e.label for e in train]))
            row = measure(model.predict_proba([e.text for e in test])[:, 1], test, thr)
            row["corpus_test"] = measure(
                model.predict_proba([e.text for e in corpus_test])[:, 1], corpus_test, thr
            )
            row["threshold"], row["fitting_side_oof_auroc"] = round(thr, 4), round(oof, 3)
            results[name][test_name] = row
            print(result_line(name, test_name, row), file=lines)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
