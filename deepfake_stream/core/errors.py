"""One error root. Each subclass says what the pipeline does with it.

``retriable`` errors hand the item to the next backend in its chain; poison errors dead-letter
it at once (nothing another backend does would help). ``reason`` is the contract's
``dlq.reason`` value.
"""

from __future__ import annotations

from typing import Literal

DlqReason = Literal[
    "invalid_json",
    "invalid_schema",
    "too_large",
    "unknown_model",
    "all_backends_failed",
    "deadline_exceeded",
    "model_error",
    "no_live_backend",
]
"""The contract's ``dlq.reason`` values: defined here, below the schemas, so that an error's
``reason`` is one of them; ``schemas.dead_letter`` names it for the messages."""


class DetectError(Exception):
    retriable: bool = False
    reason: DlqReason = "model_error"


class InvalidInput(DetectError):
    """The message itself is wrong; fix the producer."""

    def __init__(self, reason: DlqReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnknownModel(DetectError):
    reason = "unknown_model"


class DeadlineExceeded(DetectError):
    reason = "deadline_exceeded"


class ModelError(DetectError):
    """A detector failed on an input; another backend may still score it."""

    retriable = True
    reason = "model_error"


class ModelUnavailable(DetectError):
    """A detector could not be loaded; the model is routed around."""

    retriable = True
    reason = "model_error"


class BackendUnavailable(DetectError):
    """A backend as a whole is down (timeout, authentication, unknown app, circuit open).

    Retriable: the item goes to the next backend of its chain. Unlike :class:`ModelError`
    it says nothing about the items, so a failed batch is not split to find a culprit."""

    retriable = True
    reason = "model_error"


class InferenceTimedOut(BackendUnavailable):
    """A batch's inference ran past WORKER_BATCH_TIMEOUT_S: the model is stuck on this
    backend, so its items go to the next backend of their chain (a thread cannot be killed;
    the worker stops using that model until the stuck call returns)."""


class BackendsExhausted(DetectError):
    reason = "all_backends_failed"


class ArtifactIntegrityError(DetectError):
    """An artifact's bytes do not match its sha256 manifest: refuse to load it."""


class ConfigError(DetectError):
    """A setting or the model registry is wrong; the message says which and how to fix it."""
