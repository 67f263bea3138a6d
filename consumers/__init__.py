"""Scoring stages: the shared consume-produce-commit loop, the backend worker, dead letters."""
