"""Does AI text that SmolLM2 writes here, from human prompts, teach the fast tier more generators?

Issue 8 offers it: "SmolLM2 can also generate AI text locally from human prompts if more is
needed." This study generates that text and measures what it buys ``tiny-tfidf``'s recipe on
the dev sets it was not fitted on.

Generation. For each English human text on a fitting side, SmolLM2-135M-Instruct (the
package's weights, CTranslate2 int8, as served) is asked to continue it: the user turn names
the kind of text ("Continue the following news article ..."), and the assistant turn starts
with the human text's first 25 words, so the AI text begins with its human pair's prefix, as
most of ``fastdetect_family``'s AI texts do. It samples 100-220 new tokens (temperature 0.8,
top-p 0.95, repetition penalty 1.1, seed 0). The text is normalised as the dev sets are
(white space collapsed, straight quotes). A generated text joins its human source's pair
(corpus topic, or ``<pair>``), so it never straddles a fold. Generations are cached, one
JSON line each, under ``<cache>/generated/`` (the cache the length study uses): they are
derived from the shared data and stay out of the repository.

Variants (``fast_tier_study``'s protocol: logistic regression on ``tiny-tfidf``'s features,
threshold at the 1%-FPR point of out-of-fold scores on the fitting side's human texts,
pairs grouped; no figure is on text a variant was fitted on):

- ``tfidf-corpus`` / ``tfidf-corpus+smollm``: the corpus's train split, without / with
  SmolLM2's continuations of its English human texts; scored on both dev sets. No dev set
  text is used for fitting or prompting.
- ``tfidf`` / ``tfidf+smollm``: the corpus plus one dev set, without / with continuations of
  the corpus's English human texts and of ``--per-set`` human texts of that dev set; scored
  on the other dev set.

Needs the shared data and the ``[server]`` extra (CTranslate2, scikit-learn)::

    python tools/generated_text_study.py [--data-dir ../shared/data] [--per-set 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from fast_tier_study import load_study_sets, make_variant, measure, result_line, threshold

from deepfake_stream.models.dataset import Example
from deepfake_stream.models.smollm import cache_root, checkpoint
from deepfake_stream.models.smollm_ct2 import convert_int8
from deepfake_stream.models.smollm_ct2 import ctranslate2 as smollm_ctranslate2

PREFIX_WORDS = 25
KINDS = {
    "news": "news article",
    "wiki": "encyclopedia article",
    "news_xsum": "news article",
    "creative_writingprompts": "story",
    "biomed_qa_pubmedqa": "answer to a biomedical research question",
    "essay_student_argumentative": "argumentative essay",
}
SAMPLING = {
    "min_length": 100,
    "max_length": 220,
    "sampling_topk": 50,
    "sampling_topp": 0.95,
    "sampling_temperature": 0.8,
    "repetition_penalty": 1.1,
}
SPACE = re.compile(r"\s+")
QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\xa0": " "})


def normalise(text: str) -> str:
    """As the dev sets are: straight quotes, white space collapsed."""
    return SPACE.sub(" ", text.translate(QUOTES)).strip()


def key(e: Example) -> str:
    """Unique across the three files (ids are unique within one)."""
    return f"{e.fields.get('domain')}/{e.id or f'line{e.line}'}"


def continuation(human: Example, text: str) -> Example:
    """The generated text as an AI example in its human source's pair."""
    pair = re.sub(r"-human$", "", human.id or f"line{human.line}")
    fields = {**human.fields, "generator": "SmolLM2-135M-Instruct (here)"}
    return Example(
        text=text,
        label=1,
        id=f"{pair}-ai",
        topic=human.topic,
        language=human.language,
        fields=fields,
    )


class Writer:
    """SmolLM2 continuing human texts, cached by source id (a rerun resumes)."""

    def __init__(self, cache: Path, batch: int = 32) -> None:
        from transformers import AutoTokenizer

        ctranslate2 = smollm_ctranslate2("avx2")  # pinned before the import, as served
        source, _ = checkpoint(None)
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.generator = ctranslate2.Generator(
            str(convert_int8(source)), device="cpu", compute_type="int8"
        )
        ctranslate2.set_random_seed(0)
        self.batch = batch
        self.path = cache
        self.done: dict[str, str] = {}
        if cache.is_file():
            for line in cache.read_text().splitlines():
                row = json.loads(line)
                self.done[row["source"]] = row["text"]

    def prompt(self, human: Example) -> tuple[str, list[str]]:
        prefix = " ".join(human.text.split()[:PREFIX_WORDS])
        kind = KINDS[str(human.fields.get("domain"))]
        ask = (
            f"Continue the following {kind}. Write about 200 more words in the same style "
            f"and do not repeat the beginning.\n\n{prefix}"
        )
        chat = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": ask}], tokenize=False, add_generation_prompt=True
        )
        ids = self.tokenizer(chat + prefix, add_special_tokens=False)["input_ids"]
        return prefix, self.tokenizer.convert_ids_to_tokens(ids)

    def write(self, humans: list[Example]) -> list[Example]:
        from tqdm import tqdm

        todo = [h for h in humans if key(h) not in self.done]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out, tqdm(total=len(todo), desc="SmolLM2 writes") as bar:
            for at in range(0, len(todo), self.batch):
                chunk = todo[at : at + self.batch]
                prompts = [self.prompt(h) for h in chunk]
                results = self.generator.generate_batch(
                    [tokens for _, tokens in prompts],
                    include_prompt_in_result=False,
                    max_batch_size=self.batch,
                    **SAMPLING,
                )
                for h, (prefix, _), r in zip(chunk, prompts, results, strict=True):
                    new = self.tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True)
                    self.done[key(h)] = text = normalise(f"{prefix} {new}")
                    out.write(json.dumps({"source": key(h), "text": text}) + "\n")
                out.flush()
                bar.update(len(chunk))
        return [continuation(h, self.done[key(h)]) for h in humans]


def english_humans(examples: list[Example]) -> list[Example]:
    return [e for e in examples if e.label == 0 and (e.language or "en") == "en"]


def sample(humans: list[Example], n: int) -> list[Example]:
    return random.Random(0).sample(humans, min(n, len(humans)))


def fit_and_score(train: list[Example], tests: dict[str, list[Example]]) -> dict[str, Any]:
    thr, oof = threshold("tfidf", train)
    texts = [e.text for e in train]
    model = make_variant("tfidf", texts).fit(texts, np.array([e.label for e in train]))
    out: dict[str, Any] = {"threshold": round(thr, 4), "fitting_side_oof_auroc": round(oof, 3)}
    for name, test in tests.items():
        out[name] = measure(model.predict_proba([e.text for e in test])[:, 1], test, thr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data", type=Path)
    parser.add_argument(
        "--per-set", type=int, default=300, help="human texts of a dev set to continue"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    corpus_train, corpus_test, sets = load_study_sets(args.data_dir)
    writer = Writer(cache_root() / "generated" / "smollm2-continuations.jsonl")
    corpus_ai = writer.write(english_humans(corpus_train))
    dev_ai = {k: writer.write(sample(english_humans(v), args.per_set)) for k, v in sets.items()}
    lines = sys.stderr if args.json else sys.stdout  # --json: stdout holds only the JSON
    new_words = [len(e.text.split()) - PREFIX_WORDS for e in corpus_ai]
    print(
        f"generated: {len(corpus_ai)} corpus, "
        + ", ".join(f"{len(v)} {k}" for k, v in dev_ai.items())
        + f"; new words per corpus text: median {int(np.median(new_words))}",
        file=lines,
    )
    results: dict[str, Any] = {}
    for name, train in {
        "tfidf-corpus": corpus_train,
        "tfidf-corpus+smollm": corpus_train + corpus_ai,
    }.items():
        results[name] = fit_and_score(train, {**sets, "corpus_test": corpus_test})
    for test_name in sets:
        other = next(k for k in sets if k != test_name)
        variants = {
            "tfidf": corpus_train + sets[other],
            "tfidf+smollm": corpus_train + sets[other] + corpus_ai + dev_ai[other],
        }
        for name, train in variants.items():
            scored = fit_and_score(train, {test_name: sets[test_name]})
            results.setdefault(name, {})[test_name] = scored[test_name]
    for name, row in results.items():
        for test_name in sets:
            print(result_line(name, test_name, row[test_name], width=20), file=lines)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
