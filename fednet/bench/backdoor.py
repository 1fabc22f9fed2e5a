"""Backdoor success of a finished run's shared model (:mod:`fednet.data.poison`).

The shared model is the last round's aggregate (``checkpoint/``) as an honest
client of the attacked task receives it: the group's LoRA truncated to the
client's rank, and the task's head. The queries are the spam texts of the
catalogue's held-out ``test`` part, which no client trains on, with the
trigger in front; success is the fraction the model labels ham.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fednet.config import FederationConfig

__all__ = ["measure_backdoor"]


def measure_backdoor(
    cfg: FederationConfig, run_dir: str | Path, *, task: str, exclude: Sequence[str] = ()
) -> dict[str, Any]:
    """Backdoor success on ``task`` of the run in ``run_dir``.

    Parameters
    ----------
    cfg : FederationConfig
        The run's federation.
    run_dir : path
        The finished run (its ``checkpoint/`` holds the final global state).
    task : str
        The attacked task; its labels must include spam and ham.
    exclude : sequence of str
        Client ids not to measure for (the malicious client); clients with
        ``attack`` set are never measured for.

    Returns
    -------
    dict
        ``backdoor_success`` (mean over the honest clients of ``task``, in
        [0, 1]), ``per_client`` and ``queries`` (the number of triggered
        texts); for reading it, ``spam_recall`` (the fraction of the same spam
        texts without the trigger labelled spam: a model that labels every text
        ham has backdoor success 1 without any attack) and
        ``backdoor_success_on_detected`` (backdoor success among the texts it
        labels spam without the trigger; None when it labels none spam).

    Raises
    ------
    ValueError
        If the run has no checkpoint, ``task`` has no honest client, or its
        labels lack spam or ham.
    """
    from fednet.data import client_splits
    from fednet.data.poison import backdoor_labels, backdoor_queries, backdoor_success
    from fednet.federation.checkpoint import load_checkpoint
    from fednet.federation.client import ClientRuntime
    from fednet.strategies.state import GlobalState, head_group, lora_group
    from fednet.training import predict

    ckpt = load_checkpoint(Path(run_dir))
    if ckpt is None:
        raise ValueError(f"run {str(run_dir)!r} has no checkpoint to measure the backdoor on")
    state = GlobalState.from_arrayrecord(ckpt.arrays)
    honest = [c for c in cfg.clients if c.task == task and not c.attack and c.id not in exclude]
    if not honest:
        raise ValueError(f"task {task!r} has no honest client to measure the backdoor for")
    if cfg.label_space != "task":
        raise ValueError("backdoor success is measured with `federation.label-space = 'task'`")
    clean = dataclasses.replace(
        cfg, clients=tuple(dataclasses.replace(c, attack="") for c in cfg.clients)
    )
    per_client: dict[str, float] = {}
    recall: dict[str, float] = {}
    flipped: dict[str, float] = {}
    queries: tuple[str, ...] = ()
    for client in honest:
        test = client_splits(cfg, client)["test"]
        source, target = backdoor_labels(test.features["label"].names)
        queries = backdoor_queries(test["text"], test["label"], source=source)
        rt = ClientRuntime(clean, clean.client(client.id))
        if tuple(rt.data.label_names) != tuple(test.features["label"].names):
            raise ValueError(f"client {client.id}'s labels differ from its data set's test part")
        group = lora_group(client.base_model, client.task, cfg.strategy.lora_grouping)
        rt.load_global(
            {k: v.float() for k, v in state.lora[group].items()},
            {
                k: v.float()
                for k, v in state.heads[head_group(client.base_model, client.task)].items()
            },
        )
        clean_texts = [t for t, y in zip(test["text"], test["label"], strict=True) if y == source]
        with torch.no_grad():
            predicted = predict(rt.model, queries, rt.tokenizer, max_length=cfg.max_length)
            plain = predict(rt.model, clean_texts, rt.tokenizer, max_length=cfg.max_length)
        per_client[client.id] = backdoor_success(predicted, target=target)
        detected = [i for i, p in enumerate(plain) if p == source]
        recall[client.id] = len(detected) / len(plain)
        if detected:
            flipped[client.id] = backdoor_success([predicted[i] for i in detected], target=target)
    return {
        "backdoor_success": sum(per_client.values()) / len(per_client),
        "spam_recall": sum(recall.values()) / len(recall),
        "backdoor_success_on_detected": (sum(flipped.values()) / len(flipped) if flipped else None),
        "per_client": per_client,
        "queries": len(queries),
    }
