"""Where an item goes: the model registry, backend liveness and the router consumer."""
