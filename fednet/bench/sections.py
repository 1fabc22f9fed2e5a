"""The sections of the benchmark that other modules own: routing and privacy.

Each runs only when its module is installed; a section that fails is recorded
with its error and the rest of the benchmark goes on.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fednet.bench.config import BenchConfig

__all__ = ["run_section", "reused_json", "routing_section", "privacy_section"]

logger = logging.getLogger(__name__)


def run_section(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s report; ``{"skipped": ...}`` if its module is missing, ``{"error": ...}``
    if it failed."""
    try:
        return run()
    except ImportError as e:
        logger.info("%s section skipped: %s", name, e)
        return {"skipped": f"module not installed: {e}"}
    except Exception as e:  # a failed section must not discard the rest of the bench
        logger.exception("%s section failed", name)
        return {"error": f"{type(e).__name__}: {e}"}


def reused_json(config: BenchConfig, path: Path) -> dict[str, Any] | None:
    """The report at ``path`` when ``config.reuse`` is set and an earlier run wrote it."""
    if config.reuse and path.is_file():
        logger.info("reusing %s", path)
        return dict(json.loads(path.read_text(encoding="utf-8")))
    return None


def routing_section(config: BenchConfig, run_dir: Path, work: Path) -> dict[str, Any]:
    """:func:`fednet.bench.routing.run_routing_bench` on the fednet run."""
    from fednet.bench.routing import run_routing_bench

    shutil.rmtree(work / "routing", ignore_errors=True)
    return run_routing_bench(
        run_dir,
        None,
        work / "routing" / "routing.json",
        queries_per_dataset=config.routing_queries_per_dataset,
        warmup_per_dataset=config.routing_warmup_per_dataset,
        keys_dir=work / "keys",
    )


def privacy_section(config: BenchConfig, work: Path) -> dict[str, Any]:
    """:func:`fednet.bench.privacy.run_privacy_bench` (its quick mode with ``--quick``)."""
    from fednet.bench.privacy import run_privacy_bench

    shutil.rmtree(work / "privacy", ignore_errors=True)
    return run_privacy_bench(work / "privacy", quick=config.quick)
