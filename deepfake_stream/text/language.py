"""The detected language of a text (ISO 639-1), offline.

``langdetect`` ships its language profiles as JSON files inside the package and loads them
from disk: no network and no pickle. It draws random samples of the text; a fixed seed makes
the answer deterministic, and the process's global ``random`` state, which langdetect
re-seeds, is restored after each call.
"""

from __future__ import annotations

import random
import threading

from langdetect import DetectorFactory
from langdetect.detector_factory import init_factory
from langdetect.lang_detect_exception import LangDetectException

SAMPLE_CHARS = 1000
"""Characters of the text the language is detected on: enough for a stable answer, and
bounds the cost (~3 ms on one CPU core) for long texts."""
_lock = threading.Lock()


def detect_language(text: str) -> str | None:
    """ISO 639-1 code (``zh-cn``/``zh-tw`` become ``zh``), or None without letters."""
    sample = text[:SAMPLE_CHARS]
    if not any(c.isalpha() for c in sample):
        return None
    with _lock:
        state = random.getstate()
        try:
            init_factory()
            DetectorFactory.seed = 0
            from langdetect.detector_factory import _factory

            detector = _factory.create()  # type: ignore[union-attr]
            detector.append(sample)
            code: str = detector.detect()
        except LangDetectException:
            return None
        finally:
            random.setstate(state)
    return code.split("-")[0]
