"""A client model: frozen base encoder + peft LoRA + a classification head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fednet.lora.state import get_lora_state, set_lora_state
from fednet.models.registry import create_base_model, get_base_model_spec

__all__ = ["LoraClassifier", "build_classifier", "mean_pool", "init_head", "HEAD_KEYS"]

HEAD_KEYS = ("head.weight", "head.bias")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states that the attention mask keeps."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def init_head(hidden_size: int, num_labels: int, *, seed: int) -> dict[str, torch.Tensor]:
    """A seeded initial head, identical in every process for the same arguments."""
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / hidden_size**0.5
    weight = (torch.rand(num_labels, hidden_size, generator=gen) * 2 - 1) * bound
    return {"head.weight": weight, "head.bias": torch.zeros(num_labels)}


class LoraClassifier(nn.Module):
    """Sequence classifier on a LoRA-adapted encoder.

    Parameters
    ----------
    encoder : nn.Module
        A peft ``PeftModel`` around a frozen ``transformers`` encoder.
    num_labels : int
        Number of output classes.
    pooling : str
        ``mean`` pooling of the last hidden states.
    """

    def __init__(
        self, encoder: nn.Module, *, hidden_size: int, num_labels: int, pooling: str = "mean"
    ) -> None:
        super().__init__()
        if pooling != "mean":
            raise ValueError(f"pooling must be 'mean', got {pooling!r}")
        self.encoder = encoder
        self.head = nn.Linear(hidden_size, num_labels)
        self.num_labels = num_labels

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled sentence embeddings (LoRA applied)."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(out.last_hidden_state, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(input_ids, attention_mask))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """LoRA factors and head parameters: the only weights that train."""
        return [p for p in self.parameters() if p.requires_grad]

    def freeze_lora_a(self, frozen: bool) -> None:
        """Keep every LoRA A factor fixed (``frozen``) or let it train again.

        FFA-LoRA (Sun et al., ICLR 2024, https://arxiv.org/abs/2403.12313) trains
        only B, on an A shared by the whole group, so the group's average is exact.
        """
        for name, param in self.encoder.named_parameters():
            if ".lora_A." in name:
                param.requires_grad_(not frozen)

    # -- state that travels --------------------------------------------------
    def lora_state(self) -> dict[str, torch.Tensor]:
        return get_lora_state(self.encoder)

    def load_lora_state(self, state: dict[str, torch.Tensor]) -> None:
        set_lora_state(self.encoder, state)

    def head_state(self) -> dict[str, torch.Tensor]:
        return {f"head.{k}": v.detach().cpu().clone() for k, v in self.head.state_dict().items()}

    def load_head_state(self, state: dict[str, torch.Tensor]) -> None:
        missing = [k for k in HEAD_KEYS if k not in state]
        if missing:
            raise ValueError(f"head state lacks {missing}")
        w = state["head.weight"]
        if tuple(w.shape) != tuple(self.head.weight.shape):
            raise ValueError(
                f"head.weight has shape {tuple(w.shape)}, expected {tuple(self.head.weight.shape)}"
            )
        self.head.load_state_dict({"weight": w, "bias": state["head.bias"]})


def build_classifier(
    base_model: str,
    *,
    rank: int,
    lora_alpha: float,
    lora_dropout: float,
    target_modules: Sequence[str],
    num_labels: int,
    seed: int,
) -> LoraClassifier:
    """Frozen base ``base_model`` + LoRA of rank ``rank`` + a ``num_labels`` head.

    The LoRA and head initialisation is seeded, so two clients of the same rank
    start from the same factors. The head is ``[num_labels, hidden]`` with the base
    model's hidden size, so it belongs to that base model alone.

    Raises
    ------
    ValueError
        ``rank < 1``, fewer than two labels, or a target module the base model lacks
        (the message lists the model's own targets).
    """
    from peft import LoraConfig, get_peft_model

    if rank < 1:
        raise ValueError(f"`lora-rank` must be >= 1, got {rank}")
    if num_labels < 2:
        raise ValueError(f"a classifier needs >= 2 labels, got {num_labels}")
    spec = get_base_model_spec(base_model)
    base = create_base_model(base_model)
    leaves = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
    absent = [t for t in target_modules if t not in leaves]
    if absent:
        raise ValueError(
            f"`lora.target-modules` {absent} are not layers of base model {base_model!r}; "
            f"its default targets are {list(spec.lora_targets)} (leave `lora.target-modules` "
            "empty to use each base model's own)"
        )
    config = LoraConfig(
        r=rank,
        lora_alpha=lora_alpha,  # type: ignore[arg-type]
        lora_dropout=lora_dropout,
        target_modules=list(target_modules),
        bias="none",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = get_peft_model(base, config)
    hidden = int(base.config.hidden_size)  # type: ignore[union-attr,arg-type]
    model = LoraClassifier(encoder, hidden_size=hidden, num_labels=num_labels, pooling=spec.pooling)
    model.load_head_state(init_head(hidden, num_labels, seed=seed))
    return model
