"""The train/evaluate/models commands as users run them: a subprocess, output parsed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "data" / "labelled_small.jsonl"
KEYS = {
    "n",
    "auroc",
    "accuracy",
    "f1",
    "tpr_at_1pct_fpr",
    "fpr_at_threshold",
    "tpr_at_threshold",
    "texts_per_s",
}
EXTRA = {"model_id", "model_version", "split", "threshold", "short_threshold", "operating_point"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deepfake_stream", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_evaluate_json_last_line() -> None:
    proc = _cli("evaluate", "--model", "tiny-tfidf", "--data", str(DATA), "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("AUROC") for line in lines)  # the table for people
    result = json.loads(lines[-1])
    assert KEYS <= set(result) <= KEYS | EXTRA
    assert result["n"] == 24 and result["split"] == "all"
    assert 0.0 <= result["auroc"] <= 1.0 and result["texts_per_s"] > 0
    assert result["model_version"].startswith("2026.11.1+sha256:")


def test_evaluate_flags_each_text_at_the_threshold_its_verdict_takes() -> None:
    """FPR and TPR at the threshold count what verdicts flag: a text under min_words at its
    point's short texts' threshold."""
    import numpy as np

    from deepfake_stream.consumers.scoring import document_scorer
    from deepfake_stream.models.dataset import load_labelled
    from deepfake_stream.models.evaluation import evaluate, score_model
    from deepfake_stream.models.operating_points import decide
    from deepfake_stream.models.registry import load_registry
    from deepfake_stream.text import word_count

    registry = load_registry()
    config = registry.resolve("tiny-tfidf")
    scorer = document_scorer(64)
    result = evaluate("tiny-tfidf", DATA, registry=registry, progress=False, scorer=scorer)
    examples = load_labelled(DATA)
    texts = [e.text for e in examples]
    scores, _, _, _ = score_model(
        "tiny-tfidf", texts, registry=registry, progress=False, scorer=scorer
    )
    flagged = np.array(
        [
            decide(s, config, None, word_count(t)).label == "ai"
            for s, t in zip(scores, texts, strict=True)
        ]
    )
    labels = np.array([e.label for e in examples])
    assert result["fpr_at_threshold"] == float(flagged[labels == 0].mean())
    assert result["tpr_at_threshold"] == float(flagged[labels == 1].mean())
    assert result["short_threshold"] == decide(0.0, config, None, 0).threshold > result["threshold"]
    assert any(word_count(t) < config.min_words for t in texts)  # the rule is exercised


@pytest.mark.slow
def test_evaluate_by_field_reports_groups_at_an_operating_point(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    humans_seen = 0
    for row in rows:
        # One two-class group, and one group of human texts only (AUROC undefined there).
        humans_seen += row["label"] == 0
        row["source"] = "humans" if row["label"] == 0 and humans_seen % 2 else "mixed"
    data = tmp_path / "grouped.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = _cli(
        "evaluate",
        "--model",
        "tiny-tfidf",
        "--data",
        str(data),
        "--by",
        "source",
        "--json",
        "--operating-point",
        "sensitive",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["by"] == "source" and set(result["groups"]) == {"mixed", "humans"}
    assert result["operating_point"] == "sensitive"
    humans, mixed = result["groups"]["humans"], result["groups"]["mixed"]
    assert humans["auroc"] is None and humans["tpr_at_threshold"] is None
    assert 0.0 <= humans["fpr_at_threshold"] <= 1.0
    assert mixed["auroc"] is not None and KEYS - {"texts_per_s"} <= set(mixed)
    assert humans["n"] + mixed["n"] == result["n"] == len(rows)
    assert "source = humans" in proc.stdout  # the per-group tables for people
    unknown = _cli(
        "evaluate", "--model", "tiny-tfidf", "--data", str(data), "--operating-point", "nope"
    )
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_evaluate_bad_data_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": 0}\n{"text": "x", "label": "ai"}\n')
    proc = _cli("evaluate", "--model", "tiny-tfidf", "--data", str(bad))
    assert proc.returncode == 2
    assert "bad.jsonl:2" in proc.stderr and "Traceback" not in proc.stderr


def test_models_json(tmp_path: Path) -> None:
    # Only tiny-tfidf: the shipped registry may list large models that are slow to load.
    registry = tmp_path / "models.yaml"
    registry.write_text(
        "models:\n  tiny-tfidf: {kind: tfidf, size: tiny, version: '2026.11.1', "
        "artifact: tiny-tfidf}\n  broken: {kind: tfidf, size: tiny, version: '1', "
        "artifact: /nonexistent/broken}\n"
    )
    proc = _cli("models", "--json", "--models-config", str(registry))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one model is unavailable
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    broken = next(m for m in doc["models"] if m["id"] == "broken")
    assert broken["status"].startswith("artifact missing/corrupt")
    tiny = next(m for m in doc["models"] if m["id"] == "tiny-tfidf")
    assert tiny["status"] == "ready" and tiny["backends"] == ["cpu"]
    assert "+sha256:" in tiny["version"] and tiny["artifact_bytes"] < 5_000_000


def test_models_size_counts_the_weights_that_come_from_packages() -> None:
    """small-perplexity's and small-fusion's artifacts are small heads; their weights
    (SmolLM2's GGUF) ship in a package and are what a worker reads."""
    proc = _cli("models", "--no-load", "--json")
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    by_id = {m["id"]: m for m in doc["models"]}
    for model_id in ("small-perplexity", "small-fusion"):
        assert by_id[model_id]["weights_bytes"] > 50_000_000, by_id[model_id]
    assert by_id["tiny-tfidf"]["weights_bytes"] == 0
    assert " (0.0 MB)" not in proc.stdout


def test_calibrate_refuses_a_negative_domain_factor() -> None:
    proc = _cli(
        "calibrate", "--model", "tiny-tfidf", "--data", str(DATA), "--domain-fpr-factor", "-1",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--domain-fpr-factor must be at least 0" in proc.stderr


@pytest.mark.slow
def test_calibrate_writes_operating_points_whose_fpr_holds_on_the_file(tmp_path: Path) -> None:
    registry = tmp_path / "models.yaml"
    registry.write_text(
        "models:\n  # hand-written comment\n  tiny-tfidf:\n    kind: tfidf\n    size: tiny\n"
        "    version: '2026.11.1'\n    artifact: tiny-tfidf\n    threshold: 0.5\n"
    )
    proc = _cli(
        "calibrate", "--model", "tiny-tfidf", "--data", str(DATA), "--data", str(DATA),
        "--length-sample", "12", "--models-config", str(registry),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "| `balanced` |" in proc.stdout  # the model card
    text = registry.read_text()
    assert "# hand-written comment" in text and "threshold: 0.5" not in text
    entry = yaml.safe_load(text)["models"]["tiny-tfidf"]
    assert entry["default_operating_point"] == "balanced" and entry["min_words"] is not None
    assert entry["calibration"]["data"][0]["n"] == 24
    for name, point in entry["operating_points"].items():
        assert point["fpr"] <= point["target_fpr"]  # 12 human texts: zero false positives
        assert point["fpr_upper_95"] > point["target_fpr"]  # and too few to measure it
        assert point["max_domain_fpr"] == pytest.approx(2 * point["target_fpr"])
        ev = _cli(
            "evaluate", "--model", "tiny-tfidf", "--data", str(DATA), "--json",
            "--operating-point", name, "--models-config", str(registry),
        )  # fmt: skip
        assert ev.returncode == 0, ev.stderr
        result = json.loads(ev.stdout.strip().splitlines()[-1])
        assert result["threshold"] == point["threshold"]
        assert result["fpr_at_threshold"] == point["fpr"] <= point["target_fpr"]
        assert abs(result["tpr_at_threshold"] - point["tpr"]) < 1e-6
