"""How items enter: the integrators' client and the JSONL file producer."""

from deepfake_stream.producers.client import DetectProducer

__all__ = ["DetectProducer"]
