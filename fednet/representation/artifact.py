"""Representation maps on disk and in the hub: PEFT-style, signed, versioned.

A map directory holds, like a PEFT adapter:

- ``adapter_config.json``: ``peft_type = "FEDNET_MAP"``, the method and its
  settings, ``source_model``, ``network_space``, ``source_dim``, ``r`` (the
  network dimension), the shape of every tensor, the public corpus and its
  sha256, and the fit quality on held-out pairs;
- ``adapter_model.safetensors``: the fitted tensors (``map.*``).

Published, it is a hub manifest of kind :data:`~fednet.hub.maps.MAP_KIND`
whose ``base_model`` is the source model, ``task`` is the network space,
``owner`` the party that fitted and signed it, and ``metrics`` the fit quality
(``paired_cosine``, ``recall_at_1``). The hub checks the directory with
:func:`~fednet.hub.maps.map_fit_problems` and verifies signature and sha256
on every read, like any adapter.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from fednet.hub.bundle import ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_adapter_dir, tensor_shapes
from fednet.hub.keys import Ed25519PrivateKey
from fednet.hub.manifest import Manifest, VersionSpec
from fednet.hub.maps import MAP_KIND, MAP_PEFT_TYPE, map_fit_problems
from fednet.representation.maps import EmbeddingMap, FitQuality, map_from_state

__all__ = ["MapInfo", "save_map", "load_map", "map_name", "publish_map", "fetch_map"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class MapInfo:
    """What a map directory says about its map."""

    method: str
    source_model: str
    network_space: str
    source_dim: int
    target_dim: int
    corpus: str
    corpus_sha256: str
    quality: dict[str, float | int] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)


def map_name(source_model: str, network_space: str, method: str) -> str:
    """Hub name of a map: ``map-<source>-to-<network>-<method>``."""
    return f"map-{source_model}-to-{network_space}-{method}"


def save_map(
    directory: str | Path,
    m: EmbeddingMap,
    *,
    source_model: str,
    network_space: str,
    corpus: str,
    corpus_sha256: str,
    quality: FitQuality | None = None,
) -> Path:
    """Write fitted map ``m`` as a PEFT-style directory (see the module notes)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = m.state()
    config = {
        "peft_type": MAP_PEFT_TYPE,
        "format_version": FORMAT_VERSION,
        "method": m.method,
        "source_model": source_model,
        "network_space": network_space,
        "source_dim": m.source_dim,
        "r": m.target_dim,
        "hyperparameters": m.hyperparameters(),
        "tensors": {k: list(v.shape) for k, v in state.items()},
        "corpus": corpus,
        "corpus_sha256": corpus_sha256,
        "quality": quality.to_dict() if quality is not None else {},
    }
    save_file(state, str(out / ADAPTER_WEIGHTS))
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def load_map(directory: str | Path) -> tuple[EmbeddingMap, MapInfo]:
    """Read a map directory written by :func:`save_map`.

    Raises
    ------
    ValueError
        If the directory is not a consistent map (every problem named).
    """
    root = Path(directory)
    files = read_adapter_dir(root)
    config = json.loads(files[ADAPTER_CONFIG])
    if not isinstance(config, dict):
        raise ValueError(f"{root / ADAPTER_CONFIG} is not a JSON object")
    shapes = tensor_shapes(files[ADAPTER_WEIGHTS])
    problems = map_fit_problems(
        files[ADAPTER_CONFIG],
        shapes,
        base_model=str(config.get("source_model")),
        rank=rank if isinstance(rank := config.get("r"), int) else -1,
    )
    if problems:
        raise ValueError(f"map directory {str(root)!r}: " + "; ".join(problems))
    m = map_from_state(
        str(config["method"]),
        source_dim=int(config["source_dim"]),
        target_dim=int(config["r"]),
        hyperparameters=dict(config.get("hyperparameters") or {}),
        state=load_file(str(root / ADAPTER_WEIGHTS)),
    )
    info = MapInfo(
        method=m.method,
        source_model=str(config["source_model"]),
        network_space=str(config["network_space"]),
        source_dim=m.source_dim,
        target_dim=m.target_dim,
        corpus=str(config.get("corpus", "")),
        corpus_sha256=str(config.get("corpus_sha256", "")),
        quality=dict(config.get("quality") or {}),
        hyperparameters=dict(config.get("hyperparameters") or {}),
    )
    return m, info


def publish_map(hub: Any, directory: str | Path, *, owner: str, key: Ed25519PrivateKey) -> Manifest:
    """Sign and publish a map directory to ``hub`` (a HubStore or HubClient) as ``owner``.

    Returns the stored manifest with its version; a later fit of the same
    source, network space and method is the next version of the same name.
    """
    _, info = load_map(directory)
    metrics = {
        k: float(v) for k, v in info.quality.items() if k in ("paired_cosine", "recall_at_1")
    }
    draft = Manifest(
        name=map_name(info.source_model, info.network_space, info.method),
        base_model=info.source_model,
        rank=info.target_dim,
        task=info.network_space,
        owner=owner,
        kind=MAP_KIND,
        metrics=metrics,
    )
    return hub.publish(directory, draft, key)


def fetch_map(
    hub: Any, name: str, version: VersionSpec = "latest"
) -> tuple[EmbeddingMap, MapInfo, Manifest]:
    """Fetch a map from ``hub`` (signature and sha256 verified) and load it.

    Raises
    ------
    ValueError
        If the manifest is not a representation map.
    """
    manifest = hub.resolve(name, version)
    if manifest.kind != MAP_KIND:
        raise ValueError(f"{manifest.ref} is a {manifest.kind!r} artifact, not a {MAP_KIND!r}")
    with tempfile.TemporaryDirectory(prefix="fednet-map-") as tmp:
        fetched = hub.fetch(name, manifest.version, tmp)
        m, info = load_map(tmp)
    return m, info, fetched
