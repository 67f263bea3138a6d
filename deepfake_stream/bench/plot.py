"""The batching plot: offline texts/s and per-batch p99 compute time against batch size.

matplotlib is a dev dependency (``pip install -e .[dev]``); without it the plot is skipped
with a message, never a failure of the benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from deepfake_stream.bench.model import ModelBench


def plot_batching(benches: Iterable[ModelBench], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    swept = [b for b in benches if b.sweep]
    if not swept:
        raise ValueError("no sweep to plot (run `bench model --sweep`)")
    fig, (ax_tp, ax_lat) = plt.subplots(1, 2, figsize=(10, 4))
    for b in swept:
        sizes = [p.batch_size for p in b.sweep]
        label = f"{b.model_id} ({b.device})"
        ax_tp.plot(sizes, [p.texts_per_s for p in b.sweep], marker="o", label=label)
        ax_lat.plot(sizes, [p.batch_ms_p99 for p in b.sweep], marker="o", label=label)
    for ax, title, unit in (
        (ax_tp, "throughput", "texts/s"),
        (ax_lat, "p99 compute time of one batch", "ms"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
