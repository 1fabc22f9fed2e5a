"""A small but real run directory: tiny-bert PEFT adapters, heads, DP sketches, summary.

It has the layout ``fednet simulate`` writes (``rounds/<r>/<base>/<task>/``,
``personalized/<client>/``, ``summary.json``) plus ``sketches/<client>.safetensors``,
built in about a second instead of a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from fednet.models import build_classifier, create_base_model, load_tokenizer, save_adapter
from fednet.privacy import build_sketch
from fednet.training import embed_texts

BASE = "tiny-bert"
LABELS = {
    "sms-spam": ("ham", "spam"),
    "bbc-news": ("business", "entertainment", "politics", "sport", "tech"),
    "tweets-sentiment": ("negative", "neutral", "positive"),
}
TEXTS: dict[str, list[tuple[str, int]]] = {
    "sms-spam": [
        ("WINNER!! claim your free prize now, text WIN to 80086", 1),
        ("URGENT you have won a 1000 cash award call 09061701461", 1),
        ("ok see you at home later, buy some milk", 0),
        ("sorry i'll call you later, in a meeting", 0),
    ],
    "bbc-news": [
        ("Shares in the bank fell after the chancellor's budget statement", 0),
        ("The film won three awards at the festival in London", 1),
        ("The prime minister faced questions from MPs in parliament", 2),
        ("The striker scored twice as the club won the cup final", 3),
        ("The software firm unveiled a faster mobile phone chip", 4),
    ],
    "tweets-sentiment": [
        ("@united thanks for the great flight crew, loved it", 2),
        ("@AmericanAir my bag is lost again, worst airline ever", 0),
        ("@SouthwestAir is flight 123 on time today?", 1),
    ],
}
DEFAULT_CLIENTS = {
    "news-0": ("bbc-news", 0.7),
    "spam-0": ("sms-spam", 0.95),
    "spam-1": ("sms-spam", 0.9),
    "tweets-0": ("tweets-sentiment", 0.6),
}


def _classifier(task: str, rank: int, seed: int):  # type: ignore[no-untyped-def]
    model = build_classifier(
        BASE,
        rank=rank,
        lora_alpha=2.0 * rank,
        lora_dropout=0.0,
        target_modules=("query", "value"),
        num_labels=len(LABELS[task]),
        seed=seed,
    )
    gen = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=gen) * 0.1 for k, v in model.lora_state().items()}
    model.load_lora_state(state)
    head = {k: torch.randn(v.shape, generator=gen) for k, v in model.head_state().items()}
    return state, head


def _save(out: Path, task: str, rank: int, seed: int) -> None:
    lora, head = _classifier(task, rank, seed)
    save_adapter(
        out,
        lora_state=lora,
        base_model=BASE,
        rank=rank,
        lora_alpha=2.0 * rank,
        lora_dropout=0.0,
        target_modules=("query", "value"),
        head_state=head,
        label_names=LABELS[task],
        task=task,
    )


def frozen_embeddings(texts: list[str]) -> torch.Tensor:
    """What the router computes: L2-normalised mean-pooled frozen tiny-bert states."""
    from fednet.models import mean_pool

    base = create_base_model(BASE)
    return embed_texts(
        lambda ids, mask: mean_pool(
            base(input_ids=ids, attention_mask=mask).last_hidden_state, mask
        ),
        texts,
        load_tokenizer(BASE),
        max_length=64,
    )


def write_run(
    root: Path,
    clients: dict[str, tuple[str, float]] | None = None,
    *,
    rounds: int = 2,
    sketches: bool = True,
    epsilons: dict[str, float] | None = None,
) -> Path:
    """Write a run directory with ``clients`` (id -> (task, accuracy)) under ``root``.

    ``epsilons`` (client id -> composed ε) marks the run's updates private and
    gives those clients an ε; the others' weights are then published without one.
    """
    epsilons = epsilons or {}
    clients = clients or DEFAULT_CLIENTS
    root.mkdir(parents=True, exist_ok=True)
    tasks = sorted({task for task, _ in clients.values()})
    for seed, task in enumerate(tasks):
        _save(root / "rounds" / str(rounds) / BASE / task, task, 4, seed)
    summary: dict[str, dict[str, object]] = {}
    for i, (cid, (task, accuracy)) in enumerate(sorted(clients.items())):
        rank = 2 if i % 2 else 4
        _save(root / "personalized" / cid, task, rank, 100 + i)
        texts = [t for t, _ in TEXTS[task]]
        if sketches:
            sketch = build_sketch(
                frozen_embeddings(texts),
                torch.tensor([y for _, y in TEXTS[task]]),
                num_labels=len(LABELS[task]),
                clip=1.0,
                noise_multiplier=0.0,
                label_names=LABELS[task],
            )
            (root / "sketches").mkdir(exist_ok=True)
            save_file(sketch.to_tensors(), str(root / "sketches" / f"{cid}.safetensors"))
        summary[cid] = {
            "base_model": BASE,
            "task": task,
            "rank": rank,
            "num_examples": len(texts),
            "accuracy": accuracy,
            "loss": 0.5,
            "personalized_accuracy": accuracy,
            "sketch_epsilon": 1.0 if sketches else None,
        }
        if cid in epsilons:
            summary[cid]["epsilon"] = epsilons[cid]
            summary[cid]["update_epsilon"] = 0.9 * epsilons[cid]
    (root / "summary.json").write_text(
        json.dumps(
            {
                "rounds_completed": rounds,
                "clients": summary,
                "privacy": {
                    "delta": 1e-5,
                    "accountant": "rdp",
                    "updates_private": bool(epsilons),
                },
            }
        ),
        encoding="utf-8",
    )
    return root
