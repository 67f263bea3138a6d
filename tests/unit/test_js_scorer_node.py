"""The browser scorer (shim/static/tfidf-scorer.js) under Node.js: same scores as Python.

The fast check; tests/integration/test_js_scorer.py runs the same scorer in headless
Chromium, which is what the issue requires. Skipped where no ``node`` is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deepfake_stream.models.artifacts import artifact_dir
from deepfake_stream.models.detectors.tfidf import TfidfModel
from tests.js_scorer_parity import (
    PARITY_TEXTS,
    SCORER_JS,
    TOLERANCE,
    every_ngram_model,
    max_differences,
)

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
MODEL_JSON = artifact_dir("tiny-tfidf") / "model.json"

# Loads the scorer both ways it is meant to load outside a browser: CommonJS require() and
# as a plain script defining globalThis.TfidfScorer.
_RUNNER = """
const fs = require("fs");
const Scorer = require(process.argv[1]);
if (globalThis.TfidfScorer !== Scorer) throw new Error("globalThis.TfidfScorer not set");
const scorer = new Scorer(JSON.parse(fs.readFileSync(process.argv[2], "utf8")));
const texts = JSON.parse(fs.readFileSync(0, "utf8"));
console.log(JSON.stringify(texts.map((t) => [scorer.score(t), scorer.decision(t)])));
"""


def _node(script: str, *args: str, stdin: str = "") -> str:
    assert NODE is not None
    done = subprocess.run(
        [NODE, "-e", script, *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_node_scores_match_python() -> None:
    out = _node(_RUNNER, str(SCORER_JS), str(MODEL_JSON), stdin=json.dumps(PARITY_TEXTS))
    score_diff, logit_diff = max_differences(PARITY_TEXTS, json.loads(out))
    assert score_diff <= TOLERANCE
    assert logit_diff <= TOLERANCE


def test_node_matches_python_on_a_model_that_knows_every_ngram(tmp_path: Path) -> None:
    """Every n-gram of every text is a weighted feature: any tokenisation difference shows."""
    payload = every_ngram_model(PARITY_TEXTS)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(payload))
    out = np.asarray(
        json.loads(_node(_RUNNER, str(SCORER_JS), str(path), stdin=json.dumps(PARITY_TEXTS)))
    )
    model = TfidfModel(payload)
    np.testing.assert_allclose(out[:, 1], model.decision_function(PARITY_TEXTS), rtol=0, atol=1e-9)
    np.testing.assert_allclose(out[:, 0], model.predict_proba(PARITY_TEXTS), rtol=0, atol=1e-9)


def test_loads_as_an_es_module(tmp_path: Path) -> None:
    probe = tmp_path / "probe.mjs"
    probe.write_text(
        f"import {json.dumps(SCORER_JS.as_uri())};\n"
        "console.log(typeof globalThis.TfidfScorer, globalThis.TfidfScorer.FORMAT);\n"
    )
    assert NODE is not None
    done = subprocess.run([NODE, str(probe)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["function", "deepfake-stream/tfidf@1"]


def test_refuses_models_it_cannot_reproduce() -> None:
    script = """
const Scorer = require(process.argv[1]);
const model = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
const bad = [
  {...model, format: "deepfake-stream/tfidf@2"},
  {...model, tokenizer: {...model.tokenizer, unicode_normalization: "NFKC"}},
  {...model, blocks: [{...model.blocks[0], analyzer: "char"}]},
  {...model, blocks: [{...model.blocks[0], idf: model.blocks[0].idf.slice(1)}]},
];
console.log(JSON.stringify(bad.map((m) => { try { new Scorer(m); return "loaded"; }
                                         catch (e) { return e.message; } })));
"""
    messages = json.loads(_node(script, str(SCORER_JS), str(MODEL_JSON)))
    assert messages[0].startswith("unsupported model format")
    assert messages[1] == "unsupported tokenizer rules"
    assert messages[2] == "unsupported analyzer char"
    assert messages[3].startswith("malformed block")


def test_readme_javascript_example_runs(tmp_path: Path) -> None:
    """The README's client-side example, against the shim's real download body."""
    from deepfake_stream.models.registry import load_registry
    from deepfake_stream.shim.clientside import export_portable

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    [example] = re.findall(r"```js\n(.*?)```", readme, flags=re.S)
    body = tmp_path / "download.json"
    body.write_bytes(export_portable(load_registry().resolve("tiny-tfidf")).body)
    page = tmp_path / "page.mjs"
    page.write_text(
        f"import {json.dumps(SCORER_JS.as_uri())};\n"
        'import { readFileSync } from "node:fs";\n'
        "globalThis.fetch = async (url, init) => {\n"
        '  if (url !== "/v1/models/tiny-tfidf/download" || !init.headers["X-API-Key"]) {\n'
        '    return new Response(\'{"error": "unauthorized"}\', { status: 401 });\n'
        "  }\n"
        f"  return new Response(readFileSync({json.dumps(str(body))}));\n"
        "};\n" + example
    )
    assert NODE is not None
    done = subprocess.run([NODE, str(page)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    score, label, version = done.stdout.split()
    assert 0.0 <= float(score) <= 1.0 and label in ("ai", "human")
    assert version.startswith("2026.11.1+sha256:")


_LABELS = """
const fs = require("fs");
const Scorer = require(process.argv[1]);
const scorer = Scorer.fromDownload(JSON.parse(fs.readFileSync(process.argv[2], "utf8")));
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
console.log(JSON.stringify(cases.map(([s, t]) => [scorer.label(s, t), scorer.thresholdFor(t)])));
"""


def test_labels_take_the_threshold_a_verdict_on_the_text_takes(tmp_path: Path) -> None:
    """A text under min_words is judged at the default point's short texts' threshold by the
    browser as by the stream (decide, with the verdict's word count)."""
    from deepfake_stream.models.operating_points import decide
    from deepfake_stream.models.registry import load_registry
    from deepfake_stream.shim.clientside import export_portable
    from deepfake_stream.text import word_count

    config = load_registry().resolve("tiny-tfidf")
    download = tmp_path / "download.json"
    download.write_bytes(export_portable(config).body)
    short = json.loads(download.read_text())["short_threshold"]
    assert short > config.threshold  # short texts' scores are noisier (registry)
    between = (short + config.threshold) / 2
    texts = [" ".join(["word"] * n) for n in (1, config.min_words - 1, config.min_words, 400)]
    texts += [t for t in PARITY_TEXTS if t.strip()]
    cases = [(s, t) for t in texts for s in (config.threshold, between, short)]
    out = json.loads(_node(_LABELS, str(SCORER_JS), str(download), stdin=json.dumps(cases)))
    for (score, text), (label, threshold) in zip(cases, out, strict=True):
        verdict = decide(score, config, None, word_count(text))
        assert (label, threshold) == (verdict.label, verdict.threshold), (score, text)
