"""Which int8 kernels SmolLM2's CTranslate2 pass runs on, and that the pinned ones
(``MODELS_INT8_KERNELS=avx2``) read the same statistics on every x86 machine.

The golden file holds the statistics of 12 texts of tests/data read on oneDNN's AVX2
kernels (written on an AMD EPYC with AVX512-VNNI, 2026-12-07); rewrite it only when the
converted model changes: ``python -m tests.unit.test_smollm_kernels``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from deepfake_stream.models import smollm_ct2
from deepfake_stream.models.dataset import load_labelled
from deepfake_stream.models.smollm_ct2 import int8_numerics, pin_int8_kernels, same_kernels

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN = DATA / "smollm_avx2_statistics.json"
ZEN4 = {"avx", "avx2", "avx512f", "avx512bw", "avx512_vnni", "sse4_1"}


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if no CTranslate2 model had run yet (nor been imported: earlier tests of the run
    may have), with the kernels' variables and the module restored after."""
    monkeypatch.delitem(sys.modules, "ctranslate2", raising=False)
    monkeypatch.setattr(smollm_ct2, "_pinned", None)
    monkeypatch.setattr(smollm_ct2, "_late", False)
    monkeypatch.setattr(smollm_ct2, "_use_mkl_at_import", None)
    for name in ("CT2_USE_MKL", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)


def test_numerics_name_the_int8_kernels_ctranslate2_picks(
    monkeypatch: pytest.MonkeyPatch, fresh_process: None
) -> None:
    monkeypatch.setattr(smollm_ct2, "_cpu", lambda: ("GenuineIntel", {"avx2", "avx512f"}))
    assert int8_numerics() == "MKL int8, GenuineIntel, AVX512F"
    monkeypatch.setattr(smollm_ct2, "_cpu", lambda: ("AuthenticAMD", {"avx", "avx2"}))
    assert int8_numerics() == "oneDNN int8, AVX2"
    monkeypatch.setattr(smollm_ct2, "_cpu", lambda: ("AuthenticAMD", ZEN4))
    assert int8_numerics() == "oneDNN int8, AVX512_CORE_VNNI"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")  # oneDNN's own cap
    assert int8_numerics() == "oneDNN int8, AVX512_CORE"
    monkeypatch.setenv("CT2_USE_MKL", "1")  # CTranslate2's own override
    assert int8_numerics() == "MKL int8, AuthenticAMD, AVX512F"
    assert int8_numerics("cuda") == "CTranslate2 int8 on cuda"


def test_pinned_kernels_read_the_same_on_intel_and_amd(
    monkeypatch: pytest.MonkeyPatch, fresh_process: None
) -> None:
    pin_int8_kernels("avx2")
    answers = set()
    for cpu in (("GenuineIntel", ZEN4), ("AuthenticAMD", ZEN4), ("AuthenticAMD", {"avx2"})):
        monkeypatch.setattr(smollm_ct2, "_cpu", lambda cpu=cpu: cpu)
        answers.add(int8_numerics())
    assert answers == {"oneDNN int8, AVX2"}


def test_pinning_overrides_the_kernel_variables_once_per_process(
    monkeypatch: pytest.MonkeyPatch, fresh_process: None, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CT2_USE_MKL", "1")
    with caplog.at_level(logging.WARNING, logger=smollm_ct2.__name__):
        pin_int8_kernels("avx2")
        assert "CT2_USE_MKL=1 is overridden by MODELS_INT8_KERNELS=avx2" in caplog.text
        caplog.clear()
        pin_int8_kernels("native")  # too late: the first model fixed them
        assert "MODELS_INT8_KERNELS=native applies from the next start" in caplog.text
    assert os.environ["CT2_USE_MKL"] == "0" and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    with pytest.raises(ValueError, match="MODELS_INT8_KERNELS must be one of"):
        pin_int8_kernels("fast")


def test_a_pin_after_ctranslate2_was_imported_says_so_and_names_the_kernels_it_left(
    monkeypatch: pytest.MonkeyPatch, fresh_process: None, caplog: pytest.LogCaptureFixture
) -> None:
    # CTranslate2 picks MKL or oneDNN when imported: on an Intel Xeon, CT2_USE_MKL=0 set
    # afterwards was ignored (MKL ran, statistics up to 0.99 from the golden ones).
    monkeypatch.setattr(smollm_ct2, "_cpu", lambda: ("GenuineIntel", {"avx2", "avx512f"}))
    monkeypatch.setitem(sys.modules, "ctranslate2", sys.modules.get("ctranslate2", object()))
    with caplog.at_level(logging.WARNING, logger=smollm_ct2.__name__):
        pin_int8_kernels("avx2")
    assert "CTranslate2 was imported before MODELS_INT8_KERNELS=avx2 was applied" in caplog.text
    assert int8_numerics() == "MKL int8, GenuineIntel, AVX512F"  # what runs, not the pin


def test_a_pin_before_the_import_applies(
    monkeypatch: pytest.MonkeyPatch, fresh_process: None, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(smollm_ct2, "_cpu", lambda: ("GenuineIntel", {"avx2", "avx512f"}))
    monkeypatch.delitem(sys.modules, "ctranslate2", raising=False)
    with caplog.at_level(logging.WARNING, logger=smollm_ct2.__name__):
        pin_int8_kernels("avx2")
    assert caplog.text == ""
    assert int8_numerics() == "oneDNN int8, AVX2"


def test_native_kernels_leave_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch, fresh_process: None
) -> None:
    monkeypatch.setenv("CT2_USE_MKL", "1")
    pin_int8_kernels("native")
    assert os.environ["CT2_USE_MKL"] == "1" and "ONEDNN_MAX_CPU_ISA" not in os.environ


def test_records_made_before_tiers_were_named_match_their_tier() -> None:
    assert same_kernels("oneDNN int8, AuthenticAMD, AVX2", "oneDNN int8, AVX2")
    assert same_kernels("oneDNN int8, AVX2", "oneDNN int8, AVX2")
    # an old AVX512 record does not say whether oneDNN ran its VNNI kernels: no match
    assert not same_kernels("oneDNN int8, AuthenticAMD, AVX512F", "oneDNN int8, AVX512_CORE")
    assert not same_kernels("MKL int8, GenuineIntel, AVX512F", "oneDNN int8, AVX2")
    assert same_kernels("MKL int8, GenuineIntel, AVX512F", "MKL int8, GenuineIntel, AVX512F")


def test_the_shipped_small_fusion_was_fitted_and_calibrated_on_the_pinned_kernels() -> None:
    from deepfake_stream.models.artifacts import artifact_dir
    from deepfake_stream.models.detectors.fusion import FUSION_FILE
    from deepfake_stream.models.registry import load_registry

    config = load_registry().resolve("small-fusion")
    fitted = json.loads((artifact_dir(config.spec().artifact) / FUSION_FILE).read_text())
    for recorded in (fitted["numerics"], config.spec().calibrated_numerics):
        assert same_kernels(recorded, "oneDNN int8, AVX2"), recorded


def _statistics() -> tuple[list[str], smollm_ct2.TextStatistics]:
    texts = [e.text for e in load_labelled(DATA / "labelled_small.jsonl")[:12]]
    return texts, smollm_ct2.load_text_statistics(max_chars=3000, max_tokens=128, kernels="avx2")


@pytest.mark.slow
def test_pinned_kernels_read_the_golden_statistics_on_this_machine() -> None:
    # The point of pinning: a machine of another vendor or vector width reads the same
    # statistics as the one small-fusion was standardised and calibrated on.
    vendor, flags = smollm_ct2._cpu()
    if "avx2" not in flags:
        pytest.skip(f"oneDNN's AVX2 kernels need an x86 CPU with AVX2 ({vendor})")
    golden = json.loads(GOLDEN.read_text())
    texts, lm = _statistics()
    assert lm.numerics == golden["numerics"] == "oneDNN int8, AVX2"
    assert lm.digest == golden["model_bin_sha256"], "the converted model changed: see the docstring"
    np.testing.assert_allclose(lm(texts), np.asarray(golden["statistics"]), rtol=0, atol=1e-6)


if __name__ == "__main__":
    texts, lm = _statistics()
    doc = {
        "numerics": lm.numerics,
        "written_on": smollm_ct2._cpu()[0],
        "model_bin_sha256": lm.digest,
        "columns": list(lm.NAMES),
        "statistics": lm(texts).tolist(),
    }
    GOLDEN.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {GOLDEN} ({len(texts)} texts, {lm.numerics})")
