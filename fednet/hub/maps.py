"""Representation maps as hub artifacts: their manifest kind and file format.

A representation map (see :mod:`fednet.representation`) is published like an
adapter: a PEFT-style directory of ``adapter_config.json`` and
``adapter_model.safetensors``, hashed into a signed, versioned manifest whose
``kind`` is :data:`MAP_KIND`. Its ``adapter_config.json`` carries
``peft_type = "FEDNET_MAP"``, so peft and fednet's LoRA loaders refuse it as an
adapter; the hub checks it with :func:`map_fit_problems` instead of the LoRA
fit. For a map the manifest's ``base_model`` is the source model and its
``rank`` is the dimension of the network space (``r`` in the config).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["MAP_KIND", "MAP_PEFT_TYPE", "MAP_CONFIG_KEYS", "map_fit_problems"]

MAP_KIND = "representation-map"
"""``Manifest.kind`` of a representation map."""

MAP_PEFT_TYPE = "FEDNET_MAP"
"""``peft_type`` in a map's ``adapter_config.json``."""

MAP_CONFIG_KEYS: tuple[str, ...] = (
    "peft_type",
    "method",
    "source_model",
    "network_space",
    "source_dim",
    "r",
    "tensors",
)
"""Keys every map config holds; ``tensors`` maps tensor name to its shape."""


def map_fit_problems(
    config_bytes: bytes, shapes: Mapping[str, tuple[int, ...]], *, base_model: str, rank: int
) -> list[str]:
    """Every way a map directory disagrees with itself or its manifest.

    Parameters
    ----------
    config_bytes : bytes
        Contents of ``adapter_config.json``.
    shapes : mapping
        Tensor name to shape, from the ``adapter_model.safetensors`` header.
    base_model : str
        The manifest's ``base_model``: must be the config's ``source_model``.
    rank : int
        The manifest's ``rank``: must be the config's ``r`` (network dimension).

    Returns
    -------
    list[str]
        One line per problem; empty when the map is consistent.
    """
    try:
        config = json.loads(config_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return [f"adapter_config.json is not JSON: {e}"]
    if not isinstance(config, dict):
        return ["adapter_config.json is not a JSON object"]
    missing = [k for k in MAP_CONFIG_KEYS if k not in config]
    if missing:
        return [f"adapter_config.json lacks map keys {missing}"]
    problems: list[str] = []
    if config["peft_type"] != MAP_PEFT_TYPE:
        problems.append(f"peft_type is {config['peft_type']!r}, expected {MAP_PEFT_TYPE!r}")
    if config["source_model"] != base_model:
        problems.append(
            f"source_model is {config['source_model']!r} but the manifest says {base_model!r}"
        )
    for key in ("source_dim", "r"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"`{key}` must be an int >= 1, got {value!r}")
    if config["r"] != rank:
        problems.append(f"r is {config['r']!r} but the manifest's rank is {rank}")
    declared = config["tensors"]
    if not isinstance(declared, dict):
        return [*problems, "`tensors` must map tensor names to shapes"]
    declared_shapes = {k: tuple(v) if isinstance(v, list) else None for k, v in declared.items()}
    for name in sorted(set(declared_shapes) | set(shapes)):
        if name not in shapes:
            problems.append(f"tensor {name!r} is declared but not in the weights")
        elif name not in declared_shapes:
            problems.append(f"tensor {name!r} is in the weights but not declared")
        elif declared_shapes[name] != tuple(shapes[name]):
            problems.append(
                f"tensor {name!r} has shape {list(shapes[name])}, declared {declared[name]!r}"
            )
    return problems
