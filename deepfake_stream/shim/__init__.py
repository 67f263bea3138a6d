"""The HTTP shim: a FastAPI front door to the detectors and the pipeline.

``create_app(settings)`` builds the ASGI app that ``deepfake-stream shim`` serves; see
``app.py`` for the endpoints and README.md ("HTTP shim") for what clients may rely on.
"""

from deepfake_stream.shim.app import create_app

__all__ = ["create_app"]
