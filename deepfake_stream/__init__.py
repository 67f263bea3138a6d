"""deepfake-stream: AI-generated text detection as an event-driven service on Kafka."""

__version__ = "0.1.0"
