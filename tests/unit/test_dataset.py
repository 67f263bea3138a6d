"""Labelled JSONL loading and the grouped, stratified, deterministic split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from deepfake_stream.models.dataset import DatasetError, Example, load_labelled, select, split


def _corpus(n_topics: int = 40) -> list[Example]:
    # Like the shared corpus: one human text and four AI rewrites per topic.
    out = []
    for t in range(n_topics):
        for k in range(5):
            out.append(
                Example(text=f"text {t} {k}", label=int(k > 0), id=f"{t}-{k}", topic=f"T{t}")
            )
    return out


def test_split_is_grouped_stratified_deterministic() -> None:
    data = _corpus()
    train, test = split(data, test_fraction=0.2, seed=7)
    assert len(train) + len(test) == len(data)
    assert {e.topic for e in train}.isdisjoint({e.topic for e in test})
    assert len(test) == pytest.approx(0.2 * len(data), abs=10)
    share = Counter(e.label for e in test)[0] / len(test)
    assert share == pytest.approx(0.2, abs=0.05)
    again = split(list(data), test_fraction=0.2, seed=7)
    assert [e.id for e in again[1]] == [e.id for e in test]
    assert [e.id for e in split(data, seed=8)[1]] != [e.id for e in test]


def test_split_falls_back_to_id() -> None:
    data = [Example(text="x", label=i % 2, id=f"i{i}") for i in range(50)]
    train, test = split(data)
    assert {e.id for e in train}.isdisjoint({e.id for e in test})
    assert Counter(e.label for e in test) == Counter({0: 5, 1: 5})


def test_select() -> None:
    data = _corpus()
    assert select(data, "all") == data
    train, test = select(data, "train"), select(data, "test")
    assert len(train) + len(test) == len(data)
    with pytest.raises(ValueError):
        select(data, "dev")


def test_load_labelled(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [
        {"id": "a", "text": "Hello there.", "label": 0, "topic": "greeting", "language": "en"},
        {"text": "Bonjour.", "label": 1, "extra": [1, 2]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    got = load_labelled(path)
    assert [(e.id, e.label, e.topic, e.language, e.line) for e in got] == [
        ("a", 0, "greeting", "en", 1),
        (None, 1, None, None, 2),
    ]
    assert got[1].group == "line:2"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"text": "x", "label": 2}', "'label' must be 0"),
        ('{"text": "x", "label": true}', "'label' must be 0"),
        ('{"text": "", "label": 1}', "'text' must be a non-empty"),
        ('{"label": 1}', "'text' must be a non-empty"),
        ("[1, 2]", "expected a JSON object"),
        ('{"text": "x", "label": 1, "topic": 3}', "'topic' must be a string"),
    ],
)
def test_bad_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "label": 0}\n' + line + "\n")
    with pytest.raises(DatasetError, match=rf"bad.jsonl:2: .*{message}"):
        load_labelled(path)


def test_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_labelled(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no examples"):
        load_labelled(tmp_path / "empty.jsonl")
