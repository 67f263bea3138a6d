"""tools/generated_text_study.py: SmolLM2's continuations stay in their human source's pair."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

from deepfake_stream.models.dataset import Example

TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture(scope="module")
def study() -> ModuleType:
    sys.path.insert(0, str(TOOLS))  # as when run as a script: it imports the fast-tier study
    try:
        return importlib.import_module("generated_text_study")
    finally:
        sys.path.remove(str(TOOLS))


def test_a_continuation_joins_its_human_texts_pair_in_every_fold(study: ModuleType) -> None:
    tier = importlib.import_module("fast_tier_study")
    dev = Example(text="h", label=0, id="ofx-test-7-human", fields={"domain": "essay"})
    corpus = Example(text="h", label=0, id="news-en-h-1", topic="Tennis", language="en")
    for human in (dev, corpus):
        ai = study.continuation(human, "generated")
        assert (ai.label, ai.text) == (1, "generated")
        assert tier.pair_group(ai) == tier.pair_group(human)
    assert study.continuation(dev, "g").fields["domain"] == "essay"


def test_generated_text_is_normalised_as_the_dev_sets_are(study: ModuleType) -> None:
    raw = "\u201cYes,\u201d she said.\n\nIt\u2019s\xa0 here. "
    assert study.normalise(raw) == '"Yes," she said. It\'s here.'


def test_cache_keys_do_not_collide_across_files(study: ModuleType) -> None:
    a = Example(text="a", label=0, id="1-human", fields={"domain": "news_xsum"})
    b = Example(text="b", label=0, id="1-human", fields={"domain": "essay_student_argumentative"})
    assert study.key(a) != study.key(b)


def test_only_english_human_texts_are_prompts(study: ModuleType) -> None:
    rows = [
        Example(text="x", label=0, language="en"),
        Example(text="x", label=0, language="de"),
        Example(text="x", label=1, language="en"),
        Example(text="x", label=0),  # the dev sets name no language: they are English
    ]
    assert [rows.index(e) for e in study.english_humans(rows)] == [0, 3]
