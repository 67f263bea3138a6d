"""The Modal app the bridge calls: one GPU class that serves any registered detector.

Deploy with ``modal deploy deploy/modal/app.py`` from the repository root (see
``deploy/modal/README.md``). The bridge (``deepfake-stream modal-bridge``) looks the class up
with ``modal.Cls.from_name(MODAL_APP_NAME, "Detector")`` and calls
``Detector(model_id=...).score.remote.aio(texts)``.

The container builds the detector exactly as a local worker does, from the project's own
registry (``models/registry.yaml``, or ``MODELS_CONFIG``) and
``deepfake_stream.models.kinds.build_detector``,
so a model scores the same on Modal as in-process. Importing this module needs no Modal
credentials: nothing here talks to Modal until ``modal deploy`` or a call.
"""

# No ``from __future__ import annotations``: modal.parameter() reads the real type of
# ``model_id``, not a string.
import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any

import modal

from deepfake_stream.core.settings import ModalSettings

ROOT = Path(__file__).resolve().parents[2]
APP_NAME = ModalSettings().app_name  # MODAL_APP_NAME, default "deepfake-stream"
GPU = "L4"
"""24 GB, the cheapest Modal GPU that holds a large ensemble in fp16 (see the README)."""
FOLDERS = ("deepfake_stream", "consumers", "producers", "routing", "models", "schemas")
"""The repository's folders that the wheel installs under ``deepfake_stream.*``."""


def _project_image() -> modal.Image:
    image = (
        modal.Image.debian_slim(python_version="3.11")
        # The project's own dependencies, torch pinned to 2.13.0 as in pyproject.toml.
        .pip_install_from_pyproject(str(ROOT / "pyproject.toml"), optional_dependencies=["server"])
        .add_local_file(ROOT / "pyproject.toml", "/src/pyproject.toml", copy=True)
        .add_local_file(ROOT / "README.md", "/src/README.md", copy=True)
    )
    for folder in FOLDERS:  # sources plus their data: registry, topics, model artifacts
        image = image.add_local_dir(
            ROOT / folder, f"/src/{folder}", copy=True, ignore=["**/__pycache__", "**/.*"]
        )
    # Installed as the wheel installs it, so the container imports what a worker imports.
    return image.run_commands("pip install --no-deps /src")


image = _project_image()

app = modal.App(APP_NAME, image=image)


def _run(coro: Any) -> Any:
    """``asyncio.run`` even when the caller already runs an event loop (local calls)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@app.cls(
    gpu=GPU,
    scaledown_window=300,  # stay warm 5 min after the last call: a GPU cold start is slow
    timeout=600,  # one call (up to MODAL_MAX_BATCH texts) never needs this long
    max_containers=4,  # caps the bill if a backlog is replayed through Modal
)
class Detector:
    # The bridge always names the model; empty means the registry's default (MODELS_DEFAULT).
    model_id: str = modal.parameter(default="")

    @modal.enter()
    def load(self) -> None:
        """Once per container: build and load the detector (on CUDA when present)."""
        from deepfake_stream.core.settings import ModelSettings
        from deepfake_stream.models.kinds import build_detector
        from deepfake_stream.models.registry import load_registry

        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            device = "cpu"
        models = ModelSettings()  # MODELS_CONFIG / MODELS_DEFAULT, as everywhere else
        config = load_registry(models.config, default_model=models.default).resolve(self.model_id)
        self.detector = build_detector(config.spec(device))
        _run(self.detector.load())

    @modal.method()
    def score(self, texts: list[str]) -> dict[str, Any]:
        """``{"scores": [P(AI) per text, in order], "model_version": "<release>+sha256:..."}``.

        A ModelError from the detector travels back to the bridge unchanged (Modal re-raises
        the remote exception), so the worker isolates the culprit as it does locally."""
        scores = self.detector.predict_batch(texts)
        return {
            "scores": [float(s.score) for s in scores],
            "model_version": self.detector.version,
        }

    @modal.exit()
    def unload(self) -> None:
        detector = getattr(self, "detector", None)
        if detector is not None:
            _run(detector.unload())
