"""How items enter: the integrators' client and the JSONL file producer."""

from producers.client import DetectProducer

__all__ = ["DetectProducer"]
