"""Benchmarks: the relay ceiling, offline detector throughput, and the whole pipeline.

``deepfake-stream bench`` runs them side by side on one broker so their ratios hold on a
noisy machine; see :mod:`deepfake_stream.bench.run`.
"""

from deepfake_stream.bench.flow import FlowRun, percentile
from deepfake_stream.bench.model import ModelBench, run_model
from deepfake_stream.bench.pipeline import PipelineBench, run_pipeline
from deepfake_stream.bench.relay import run_relay
from deepfake_stream.bench.report import Goal, check_goals

__all__ = [
    "FlowRun",
    "Goal",
    "ModelBench",
    "PipelineBench",
    "check_goals",
    "percentile",
    "run_model",
    "run_pipeline",
    "run_relay",
]
