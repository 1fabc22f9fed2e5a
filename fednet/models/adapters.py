"""Adapters on disk in PEFT format, with the task head beside them.

A directory holds ``adapter_config.json`` and ``adapter_model.safetensors``
(loadable with ``peft.PeftModel.from_pretrained(base, dir)``), plus
``head.safetensors`` whose metadata records the label names.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from fednet.models.registry import available_base_models, get_base_model_spec, linear_shapes

__all__ = [
    "save_adapter",
    "load_adapter",
    "adapter_fit_problems",
    "SavedAdapter",
    "ADAPTER_FILES",
    "HEAD_FILE",
]

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


_LORA_TENSOR = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$"
)


def _pattern_rank(module: str, config: Mapping[str, object], default: int) -> int:
    """``r`` of ``module``: peft's ``rank_pattern`` (a regex on the module name's end)."""
    pattern = config.get("rank_pattern") or {}
    if isinstance(pattern, Mapping):
        for key, rank in pattern.items():
            if re.match(rf"(.*\.)?({key})$", module) and isinstance(rank, int):
                return rank
    return default


def adapter_fit_problems(
    config: Mapping[str, object],
    shapes: Mapping[str, Sequence[int]],
    base_model: str,
) -> list[str]:
    """Every way a PEFT LoRA adapter does not fit base model ``base_model``.

    Checks that ``adapter_config.json`` is a LoRA config with an int ``r >= 1``;
    that the weights hold LoRA tensors; that each targets a linear layer the
    base model has; and that ``lora_A`` is ``[r, in_features]`` and ``lora_B``
    ``[out_features, r]`` with that layer's sizes and the config's ``r`` (or its
    ``rank_pattern`` entry).

    Parameters
    ----------
    config : mapping
        The parsed ``adapter_config.json``.
    shapes : mapping
        Tensor name to shape, from ``adapter_model.safetensors``.
    base_model : str
        Registered base model the adapter claims to be for.

    Returns
    -------
    list[str]
        One line per problem; empty when the adapter fits.
    """
    if base_model not in available_base_models():
        return [
            f"base model {base_model!r} is not registered; "
            f"known: {', '.join(available_base_models())}"
        ]
    problems: list[str] = []
    peft_type = config.get("peft_type", "LORA")
    if peft_type != "LORA":
        problems.append(f"adapter_config.json has peft_type {peft_type!r}; only LORA is served")
    r = config.get("r")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        return [*problems, f"adapter_config.json `r` must be an int >= 1, got {r!r}"]
    layers = linear_shapes(base_model)
    found = 0
    for name, shape in sorted(shapes.items()):
        m = _LORA_TENSOR.match(name)
        if m is None:
            continue
        found += 1
        module, part = m["module"], m["part"]
        shape = tuple(int(d) for d in shape)
        if module not in layers:
            problems.append(f"tensor {name} targets {module!r}, which {base_model} does not have")
            continue
        rank = _pattern_rank(module, config, r)
        fan_in, fan_out = layers[module]
        want = (rank, fan_in) if part == "A" else (fan_out, rank)
        if shape == want:
            continue
        if len(shape) == 2 and shape[0 if part == "A" else 1] != rank:
            got = shape[0 if part == "A" else 1]
            problems.append(
                f"tensor {name} has rank {got} (shape {list(shape)}) but adapter_config.json "
                f"has r={rank}"
            )
        else:
            problems.append(
                f"tensor {name} has shape {list(shape)}; {module} of {base_model} "
                f"({fan_in} -> {fan_out}) at r={rank} needs {list(want)}"
            )
    if not found:
        problems.append("adapter_model.safetensors holds no LoRA tensor (lora_A/lora_B weights)")
    return problems
