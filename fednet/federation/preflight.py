"""Check a federation before anything runs or is written.

Every client's base model, data set, columns and partition are resolved here,
so a bad preset fails in one line before a run directory exists.
"""

from __future__ import annotations

from fednet.config import FederationConfig
from fednet.errors import ConfigError

__all__ = ["check_federation"]


def check_federation(cfg: FederationConfig) -> None:
    """Raise :class:`ConfigError` naming the first bad client key and value."""
    from fednet.data import available_datasets
    from fednet.federation.client import load_client_data
    from fednet.models import get_base_model_spec
    from fednet.strategies import available_strategies

    if cfg.strategy.name not in available_strategies():
        raise ConfigError(
            f"`strategy.name`: unknown strategy {cfg.strategy.name!r}; "
            f"valid: {', '.join(available_strategies())}"
        )
    labels_by_task: dict[str, tuple[str, ...]] = {}
    for c in cfg.clients:
        where = f"clients[{c.id}]"
        try:
            get_base_model_spec(c.base_model)
        except ValueError as e:
            raise ConfigError(f"`{where}.base-model`: {e}") from None
        looks_like_file = any(
            c.dataset.endswith(s) for s in (".csv", ".tsv", ".json", ".jsonl", ".parquet")
        )
        if not looks_like_file and "/" not in c.dataset and c.dataset not in available_datasets():
            raise ConfigError(
                f"`{where}.dataset`: unknown data set {c.dataset!r}; valid: "
                f"{', '.join(available_datasets())}, or a .csv/.json/.jsonl/.parquet file"
            )
        try:
            data = load_client_data(cfg, c)
        except (ValueError, FileNotFoundError, KeyError) as e:
            msg = str(e).strip("'\"")
            raise ConfigError(f"`{where}.dataset` {c.dataset!r}: {msg}") from None
        if not data.train_texts or not data.test_texts:
            raise ConfigError(
                f"`{where}.partition` {c.partition}: the client's partition of {c.dataset!r} "
                f"is too small to train and evaluate ({len(data.train_texts)} train, "
                f"{len(data.test_texts)} held-out examples)"
            )
        seen = labels_by_task.setdefault(c.task, data.label_names)
        if seen != data.label_names:
            raise ConfigError(
                f"`{where}.task` {c.task!r}: label names {list(data.label_names)} differ from "
                f"other clients of the task ({list(seen)})"
            )
