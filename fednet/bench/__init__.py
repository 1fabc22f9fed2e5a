"""Benchmarks of the network: fednet against one big model, and privacy against utility.

:func:`run_bench` (``fednet bench``, ``make bench``) trains every way of
answering on one preset and measures them on one held-out query stream:
local-only, centralized, a single federated generalist, the broadcast
ensemble, fednet's routed cascade and oracle routing. It writes a JSON and a
Markdown report with the targets met or not, and PNG figures.
:mod:`fednet.bench.privacy` measures accuracy against ε.

Importing this package is cheap; the heavy work is imported when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fednet.bench.config import QUICK, BenchConfig

__all__ = ["QUICK", "BenchConfig", "run_bench"]


def run_bench(
    config: BenchConfig, *, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Run the benchmark; see :func:`fednet.bench.runner.run_bench`."""
    from fednet.bench.runner import run_bench as run

    return run(config, progress=progress)
