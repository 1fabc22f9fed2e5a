"""Check a federation before anything runs or is written.

Every client's base model, data set, columns and partition are resolved here,
so a bad preset fails in one line before a run directory exists.
"""

from __future__ import annotations

import logging

from fednet.config import FederationConfig, is_data_file
from fednet.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["check_federation"]


def check_federation(cfg: FederationConfig) -> None:
    """Raise :class:`ConfigError` naming the first bad client key and value.

    A client is refused when its base model is unknown or not installed
    (:class:`~fednet.errors.ModelNotInstalledError`, naming the recipe that
    installs it), its data set cannot be read, its partition is too small to
    train and evaluate, or its data holds fewer than two classes.
    """
    from fednet.data import available_datasets
    from fednet.federation.client_data import load_client_data
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
            spec = get_base_model_spec(c.base_model)
        except ValueError as e:
            raise ConfigError(f"`{where}.base-model`: {e}") from None
        spec.require()  # one line naming the recipe that installs a missing model
        if not is_data_file(c.dataset) and c.dataset not in available_datasets():
            raise ConfigError(
                f"`{where}.dataset`: unknown data set {c.dataset!r}; valid: "
                f"{', '.join(available_datasets())}, or a .csv/.tsv/.json/.jsonl/.parquet file"
            )
        try:
            data = load_client_data(cfg, c)
        except (ValueError, FileNotFoundError, KeyError) as e:
            msg = str(e).strip("'\"")
            raise ConfigError(f"`{where}.dataset` {c.dataset!r}: {msg}") from None
        classes = [k for k, n in data.report.get("label_counts", {}).items() if n]
        if len(classes) < 2:
            raise ConfigError(
                f"`{where}.dataset` {c.dataset!r}: its data has {len(classes)} class "
                f"{classes}; a classifier needs at least 2 (column "
                f"{c.label_column!r}, {data.report.get('rows_kept')} rows kept)"
            )
        if len(set(data.train_labels)) < 2:
            logger.warning(
                "%s: the client's training partition holds one class only (%s); it can still "
                "help train the shared adapter",
                where,
                data.label_names[data.train_labels[0]] if data.train_labels else "none",
            )
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
