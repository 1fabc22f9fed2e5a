"""The benchmark's figures, as PNG files (matplotlib, Agg backend)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_plots", "PLOTS"]

logger = logging.getLogger(__name__)

PLOTS = ("accuracy_per_round", "epsilon_per_round", "router_confusion", "communication")
"""Names of the figures :func:`write_plots` writes."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_rounds(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.grid(alpha=0.3)


def _accuracy(plt: Any, per_round: Mapping[str, Any], path: Path) -> None:
    datasets = sorted({d for v in per_round.values() for d in v["by_dataset"]})
    fig, axes = plt.subplots(
        1, max(1, len(datasets)), figsize=(4.2 * max(1, len(datasets)), 3.4), squeeze=False
    )
    for ax, dataset in zip(axes[0], datasets, strict=False):
        for name, series in per_round.items():
            values = series["by_dataset"].get(dataset)
            if not values:
                continue
            points = [
                (r, v) for r, v in zip(series["rounds"], values, strict=True) if v is not None
            ]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=name)
        ax.set_title(dataset)
        ax.set_ylim(0, 1)
        _integer_rounds(ax)
    axes[0][0].set_ylabel("held-out accuracy (mean of clients)")
    axes[0][-1].legend(loc="lower right", fontsize="small")
    fig.suptitle("Accuracy per round per data set")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _epsilon(plt: Any, eps: Mapping[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    markers = "osD^vP*X"
    for i, (cid, values) in enumerate(eps["by_client"].items()):
        points = [(r, v) for r, v in zip(eps["rounds"], values, strict=True) if v is not None]
        if points:
            ax.plot(
                *zip(*points, strict=True),
                marker=markers[i % len(markers)],
                drawstyle="steps-post",
                alpha=0.8,
                label=cid,
            )
    ax.set_ylabel("ε spent after the round (ledger)")
    ax.set_title("ε per round per client (fednet run; equal spends overlap)")
    _integer_rounds(ax)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _confusion(plt: Any, confusion: Mapping[str, Any], path: Path) -> None:
    import numpy as np

    matrix = np.asarray(confusion["matrix"], dtype=float)
    rows, cols = confusion["rows"], confusion["columns"]
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1.0)
    fig, ax = plt.subplots(figsize=(1.6 * len(cols) + 2.5, 1.1 * len(rows) + 1.8))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(rows)):
        for j in range(len(cols)):
            color = "white" if share[i, j] > 0.6 else "black"
            ax.text(
                j,
                i,
                f"{int(matrix[i, j])}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                color=color,
                fontsize=9,
            )
    ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("data set of the router's first choice")
    ax.set_ylabel("query's data set")
    ax.set_title("Router confusion (routed cascade)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _communication(plt: Any, comm: Mapping[str, Any], path: Path) -> None:
    import numpy as np

    rows = comm["rounds"]
    x = np.arange(len(rows))
    width = 0.27
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.bar(x - width, [r["bytes_up"] for r in rows], width, label="fednet up (LoRA+head+sketch)")
    ax.bar(x, [r["bytes_down"] for r in rows], width, label="fednet down")
    ax.bar(
        x + width,
        [r["full_fedavg_bytes_up"] for r in rows],
        width,
        label="full-model FedAvg, each way",
    )
    ax.set_yscale("log")
    low = min([r["bytes_up"] for r in rows] + [r["bytes_down"] for r in rows] or [1])
    high = max([r["full_fedavg_bytes_up"] for r in rows] or [1])
    ax.set_ylim(max(1, low / 4), high * 40)
    ax.set_xticks(x, [str(r["round"]) for r in rows])
    ax.set_xlabel("round")
    ax.set_ylabel("bytes (all clients)")
    ax.set_title("Communication per round against full-model FedAvg")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(
    out_dir: Path,
    stem: str,
    *,
    accuracy: Mapping[str, Any],
    epsilon: Mapping[str, Any],
    confusion: Mapping[str, Any] | None,
    communication: Mapping[str, Any],
) -> dict[str, str]:
    """Write every figure as ``<stem>-<name>.png`` in ``out_dir``; return name to file name.

    ``confusion`` may be ``None`` (no routed row): that figure is skipped.
    """
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    jobs = [
        ("accuracy_per_round", _accuracy, accuracy),
        ("epsilon_per_round", _epsilon, epsilon),
        ("router_confusion", _confusion, confusion),
        ("communication", _communication, communication),
    ]
    for name, draw, data in jobs:
        if data is None:
            continue
        path = out_dir / f"{stem}-{name}.png"
        draw(plt, data, path)
        written[name] = path.name
        logger.info("wrote %s", path)
    return written
