"""Adapters on disk in PEFT format, with the task head beside them.

A directory holds ``adapter_config.json`` and ``adapter_model.safetensors``
(loadable with ``peft.PeftModel.from_pretrained(base, dir)``), plus
``head.safetensors`` whose metadata records the label names.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from fednet.models.registry import get_base_model_spec

__all__ = ["save_adapter", "load_adapter", "SavedAdapter", "ADAPTER_FILES", "HEAD_FILE"]

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
HEAD_FILE = "head.safetensors"


@dataclass(frozen=True)
class SavedAdapter:
    """What :func:`load_adapter` reads back."""

    lora_state: dict[str, torch.Tensor]
    head_state: dict[str, torch.Tensor] | None
    label_names: tuple[str, ...]
    rank: int
    lora_alpha: float
    target_modules: tuple[str, ...]
    base_model: str


def save_adapter(
    out_dir: str | Path,
    *,
    lora_state: dict[str, torch.Tensor],
    base_model: str,
    rank: int,
    lora_alpha: float,
    lora_dropout: float,
    target_modules: Sequence[str],
    head_state: dict[str, torch.Tensor] | None = None,
    label_names: Sequence[str] = (),
    task: str = "",
) -> Path:
    """Write a PEFT adapter (and head) into ``out_dir``; return the directory.

    Files are written into a temporary sibling directory and moved into place,
    so a reader never sees half an adapter.
    """
    from peft import LoraConfig

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    config = LoraConfig(
        r=rank,
        lora_alpha=lora_alpha,  # type: ignore[arg-type]
        lora_dropout=lora_dropout,
        target_modules=list(target_modules),
        bias="none",
        base_model_name_or_path=get_base_model_spec(base_model).name_or_path(),
    )
    config.save_pretrained(str(tmp))
    meta = {"format": "pt", "fednet.base_model": base_model}
    save_file(
        {k: v.contiguous() for k, v in lora_state.items()},
        str(tmp / "adapter_model.safetensors"),
        metadata=meta,
    )
    if head_state is not None:
        head_meta = {
            "label_names": json.dumps(list(label_names)),
            "task": task,
            "base_model": base_model,
        }
        save_file(
            {k: v.contiguous() for k, v in head_state.items()},
            str(tmp / HEAD_FILE),
            metadata=head_meta,
        )
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        import shutil

        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return out


def load_adapter(path: str | Path) -> SavedAdapter:
    """Read an adapter directory written by :func:`save_adapter` (or by peft)."""
    d = Path(path)
    missing = [f for f in ADAPTER_FILES if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d} is not an adapter directory: missing {missing}")
    config = json.loads((d / "adapter_config.json").read_text())
    lora_state = load_file(str(d / "adapter_model.safetensors"))
    with safe_open(str(d / "adapter_model.safetensors"), "pt") as f:
        meta = f.metadata() or {}
    head_state = None
    label_names: tuple[str, ...] = ()
    if (d / HEAD_FILE).is_file():
        head_state = load_file(str(d / HEAD_FILE))
        with safe_open(str(d / HEAD_FILE), "pt") as f:
            hmeta = f.metadata() or {}
        label_names = tuple(json.loads(hmeta.get("label_names", "[]")))
    return SavedAdapter(
        lora_state=lora_state,
        head_state=head_state,
        label_names=label_names,
        rank=int(config["r"]),
        lora_alpha=float(config["lora_alpha"]),
        target_modules=tuple(sorted(config["target_modules"])),
        base_model=meta.get("fednet.base_model", ""),
    )
