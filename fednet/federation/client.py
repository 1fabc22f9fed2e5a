"""The client side of a federation: private data, local training, evaluation.

A :class:`ClientRuntime` owns one silo's private data and its model. It turns an
incoming training or evaluation message into a reply that holds only LoRA
factors, head tensors and scalar metrics. In simulation one process may serve
several clients over many rounds, so runtimes are cached per client id; in
deployment every message starts a fresh process and builds one anew.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Any

import torch

from fednet.config import ClientConfig, FederationConfig
from fednet.errors import ConfigError
from fednet.federation.client_data import ClientData, client_seed

__all__ = ["ClientRuntime", "data_profile", "get_runtime", "poisoned", "resolve_client"]

logger = logging.getLogger(__name__)


def poisoned(data: ClientData, attack: str, *, seed: int) -> ClientData:
    """``data`` with its training part poisoned by ``attack`` (:mod:`fednet.data.poison`);
    the held-out part stays clean. A benchmark setting: it is logged as a warning."""
    from fednet.data.poison import poison_training

    texts, labels = poison_training(
        data.train_texts, data.train_labels, data.label_names, attack, seed=seed
    )
    logger.warning(
        "ATTACK CLIENT: training on %s-poisoned data (%d examples, %d before)",
        attack,
        len(texts),
        len(data.train_texts),
    )
    return dataclasses.replace(data, train_texts=texts, train_labels=labels)


def resolve_client(cfg: FederationConfig, node_config: dict[str, object]) -> ClientConfig:
    """Which preset entry a node runs: ``client-id`` (deployment) or ``partition-id``."""
    if "client-id" in node_config:
        return cfg.client(str(node_config["client-id"]))
    if "partition-id" in node_config:
        pid = int(node_config["partition-id"])  # type: ignore[call-overload]
        if not 0 <= pid < len(cfg.clients):
            raise ConfigError(
                f"node partition-id {pid} is outside the preset's {len(cfg.clients)} clients"
            )
        return cfg.clients[pid]
    raise ConfigError("node config names neither `client-id` nor `partition-id`")


class ClientRuntime:
    """One client's data, model and tokenizer, built once and reused."""

    def __init__(self, cfg: FederationConfig, client: ClientConfig) -> None:
        from fednet.federation.cache import cached_client_data
        from fednet.models import build_classifier, load_tokenizer, lora_targets

        self.cfg = cfg
        self.client = client
        self.data = cached_client_data(cfg, client)
        if client.attack:
            self.data = poisoned(self.data, client.attack, seed=client_seed(cfg, client.id))
        self.tokenizer = load_tokenizer(client.base_model)
        self.seed = client_seed(cfg, client.id)
        self.lora_alpha = cfg.lora_alpha(client.lora_rank)
        names = list(self.data.label_names)
        if len(names) < 2:
            raise ValueError(
                f"client {client.id}: its data has {len(names)} class {names}; "
                "a classifier needs at least 2"
            )
        self.model = build_classifier(
            client.base_model,
            rank=client.lora_rank,
            lora_alpha=self.lora_alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=lora_targets(client.base_model, cfg.lora.target_modules),
            num_labels=len(self.data.label_names),
            seed=cfg.seed,
        )

    @property
    def num_examples(self) -> int:
        return len(self.data.train_texts)

    def load_global(
        self, lora: dict[str, torch.Tensor] | None, head: dict[str, torch.Tensor] | None
    ) -> None:
        """Load the server's LoRA (truncated to this client's rank) and head."""
        from fednet.lora import resize_rank

        if lora:
            self.model.load_lora_state(resize_rank(lora, self.client.lora_rank))
        if head:
            self.model.load_head_state(head)

    def train(self, *, server_round: int, steps: int | None = None) -> dict[str, float]:
        """Train locally; return scalar metrics."""
        from fednet.training import balanced_class_weights, batches, train_steps

        steps = steps or self.client.local_steps
        stream = batches(
            self.data.train_texts,
            self.data.train_labels,
            self.tokenizer,
            batch_size=self.client.batch_size,
            max_length=self.cfg.max_length,
            seed=self.seed + server_round,
        )
        weights = None
        if self.client.class_weighting == "balanced":
            weights = balanced_class_weights(self.data.train_labels, len(self.data.label_names))
        t0 = time.process_time()
        loss = train_steps(
            self.model,
            stream,
            steps=steps,
            learning_rate=self.client.learning_rate,
            class_weights=weights,
        )
        compute = time.process_time() - t0
        logger.info(
            "client %s round %s: %d steps, loss %.4f", self.client.id, server_round, steps, loss
        )
        return {
            "train-loss": loss,
            "steps": float(steps),
            "compute-s": compute,
            "num-examples": float(self.num_examples),
        }

    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on this client's held-out split."""
        from fednet.training import evaluate

        res = evaluate(
            self.model,
            self.data.test_texts,
            self.data.test_labels,
            self.tokenizer,
            max_length=self.cfg.max_length,
        )
        return {"loss": res.loss, "accuracy": res.accuracy, "num-examples": float(res.num_examples)}

    def profile(self) -> dict[str, object]:
        """Public facts about this client: no data, only the task's shape."""
        return {
            "client-id": self.client.id,
            "base-model": self.client.base_model,
            "task": self.client.task,
            "label-names": list(self.data.label_names),
            "lora-rank": self.client.lora_rank,
            "lora-alpha": self.lora_alpha,
            "num-examples": self.num_examples,
            **data_profile(self.data.report),
        }


def data_profile(report: dict[str, Any]) -> dict[str, int | str]:
    """The counts and the encoding of a data report, as ``data-*`` profile fields."""
    from fednet.protocol import DATA_ENCODING_KEY

    if not report:
        return {}
    dropped = report.get("dropped", {})
    out: dict[str, int | str] = {
        "data-rows-read": int(report["rows_read"]),
        "data-rows-kept": int(report["rows_kept"]),
        "data-rows-dropped": int(report["rows_dropped"]),
        "data-dropped-blank-line": int(dropped.get("blank-line", 0)),
        "data-dropped-empty-text": int(dropped.get("empty-text", 0)),
        "data-dropped-empty-label": int(dropped.get("empty-label", 0)),
        "data-duplicate-rows": int(report["duplicate_rows"]),
        "data-conflicting-texts": int(report["conflicting_texts"]),
        "data-train-examples": int(report["train_examples"]),
        "data-test-examples": int(report["test_examples"]),
    }
    if report.get("encoding"):
        out[DATA_ENCODING_KEY] = str(report["encoding"])
    return out


@functools.lru_cache(maxsize=32)
def _cached_runtime(cfg: FederationConfig, client_id: str) -> ClientRuntime:
    return ClientRuntime(cfg, cfg.client(client_id))


def get_runtime(cfg: FederationConfig, client: ClientConfig) -> ClientRuntime:
    """The runtime of ``client``, built once per process."""
    return _cached_runtime(cfg, client.id)
