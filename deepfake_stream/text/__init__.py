"""What is known of a text before any model sees it: its normalised form (with what evasion
was found), its language, and the windows that cover it."""

from deepfake_stream.text.language import detect_language
from deepfake_stream.text.normalise import Normalised, normalise, word_count
from deepfake_stream.text.windows import Windows, aggregate, split_windows

__all__ = [
    "Normalised",
    "Windows",
    "aggregate",
    "detect_language",
    "normalise",
    "split_windows",
    "word_count",
]
