"""Atomic server checkpoints, so a killed federation resumes at its last round.

After every completed round the server writes ``<run-dir>/checkpoint/``:

- ``round-<r>.safetensors``: the global state (one LoRA per base model, one
  head per task and base model, as :class:`~fednet.strategies.GlobalState`
  keys) and the torch and numpy RNG states;
- ``round-<r>.json``: the round number, the strategy's state (its sampler's
  RNG, anything its ``state_dict()`` returns, privacy ledgers, refusals), the
  run history and Python's RNG state;
- ``latest.json``: names the two files above and the SHA-256 of each.

The JSON file's ``meta.preset`` is the preset's fingerprint
(:func:`preset_fingerprint`): the settings a run cannot change half way (its
clients, their data, tasks, ranks and base models, the LoRA layout and the
strategy's aggregation choices). ``--resume`` with a preset that differs is
refused, naming every setting that changed.

DP noise and DP sampling are never in a checkpoint: they come from OS entropy
(:mod:`fednet.privacy.randomness`), which has no state to save, and a saved
generator state would let anyone who reads the checkpoint regenerate the noise.

``latest.json`` is replaced last (``os.replace``), after both files are on
disk, so a crash at any moment leaves the previous checkpoint whole: a
resumed run loses at most the round that was in progress.

A strategy opts into more state by defining ``state_dict()`` and
``load_state_dict(state)`` (JSON-safe), or by holding ``ledgers``: a mapping
of objects with those two methods, such as
:class:`~fednet.privacy.PrivacyLedger`. Wrappers are followed through their
``strategy`` attribute.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord

from fednet.atomic import write_atomic
from fednet.errors import ConfigError

__all__ = [
    "Checkpoint",
    "CHECKPOINT_DIR",
    "save_checkpoint",
    "load_checkpoint",
    "strategy_state",
    "restore_strategy",
    "capture_rng",
    "restore_rng",
    "resume_from",
    "check_resume",
    "checkpointing",
    "preset_fingerprint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
_VERSION = 1
_KEEP = 2
_RNG_PREFIX = "rng/"


@dataclass
class Checkpoint:
    """What a resumed server needs to continue after ``server_round``."""

    server_round: int
    arrays: ArrayRecord
    strategy: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


# -- RNG -----------------------------------------------------------------------
def capture_rng() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Python, numpy and torch global RNG states, as (JSON part, tensor part)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    meta = {
        "python": [version, list(internal), gauss_next],
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
    }
    tensors = {
        f"{_RNG_PREFIX}torch": torch.get_rng_state(),
        f"{_RNG_PREFIX}numpy": torch.from_numpy(
            np.asarray(keys, dtype=np.uint32).view(np.int32).copy()
        ),
    }
    return meta, tensors


def restore_rng(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`capture_rng`."""
    if "python" in meta:
        version, internal, gauss_next = meta["python"]
        random.setstate((version, tuple(internal), gauss_next))
    if "numpy" in meta and f"{_RNG_PREFIX}numpy" in tensors:
        kind, pos, has_gauss, cached = meta["numpy"]
        keys = tensors[f"{_RNG_PREFIX}numpy"].numpy().view(np.uint32)
        np.random.set_state((kind, keys, int(pos), int(has_gauss), float(cached)))
    if f"{_RNG_PREFIX}torch" in tensors:
        torch.set_rng_state(tensors[f"{_RNG_PREFIX}torch"])


# -- strategy state ------------------------------------------------------------
def _chain(strategy: Any) -> list[Any]:
    out: list[Any] = []
    seen: set[int] = set()
    obj = strategy
    while obj is not None and id(obj) not in seen and len(out) < 8:
        seen.add(id(obj))
        out.append(obj)
        obj = _own(obj, "strategy")
    return out


def _own(obj: Any, name: str) -> Any:
    """``obj.name`` if ``obj`` itself defines it (not forwarded to a wrapped strategy)."""
    if name in getattr(obj, "__dict__", {}):
        return obj.__dict__[name]
    attr = getattr(type(obj), name, None)
    return getattr(obj, name) if isinstance(attr, property) or callable(attr) else None


def strategy_state(strategy: Any) -> dict[str, Any]:
    """JSON-safe state of ``strategy`` and the strategies it wraps.

    Per layer: its ``random.Random`` sampler (``rng``), ``state_dict()`` if
    defined, its ``ledgers`` and the ``refusals`` it recorded. Never a noise
    source or generator.
    """
    layers = []
    for obj in _chain(strategy):
        layer: dict[str, Any] = {"class": type(obj).__name__}
        rng = _own(obj, "rng")
        if isinstance(rng, random.Random):
            version, internal, gauss_next = rng.getstate()
            layer["rng"] = [version, list(internal), gauss_next]
        if callable(_own(obj, "state_dict")):
            layer["state"] = obj.state_dict()
        ledgers = _own(obj, "ledgers")
        if isinstance(ledgers, dict):
            layer["ledgers"] = {
                str(k): v.state_dict()
                for k, v in ledgers.items()
                if callable(getattr(v, "state_dict", None))
            }
        refusals = _own(obj, "refusals")
        if isinstance(refusals, dict):
            layer["refusals"] = {str(k): str(v) for k, v in refusals.items()}
        layers.append(layer)
    return {"layers": layers}


def restore_strategy(strategy: Any, state: dict[str, Any]) -> None:
    """Load :func:`strategy_state` output into a freshly built ``strategy``.

    Raises :class:`~fednet.errors.ConfigError` when the checkpoint was written
    by a different strategy stack.
    """
    chain = _chain(strategy)
    layers = state.get("layers", [])
    have = [type(o).__name__ for o in chain]
    want = [layer.get("class") for layer in layers]
    if have != want:
        raise ConfigError(
            f"the checkpoint was written by strategy {want}, but the preset builds {have}"
        )
    for obj, layer in zip(chain, layers, strict=True):
        rng = _own(obj, "rng")
        if "rng" in layer and isinstance(rng, random.Random):
            version, internal, gauss_next = layer["rng"]
            rng.setstate((version, tuple(internal), gauss_next))
        if "state" in layer and callable(_own(obj, "load_state_dict")):
            obj.load_state_dict(layer["state"])
        ledgers = _own(obj, "ledgers")
        for key, saved in layer.get("ledgers", {}).items():
            if isinstance(ledgers, dict) and key in ledgers:
                ledgers[key].load_state_dict(saved)
            else:
                logger.warning("checkpoint holds a ledger for %s that the strategy lacks", key)
        refusals = _own(obj, "refusals")
        if isinstance(refusals, dict):
            refusals.update(layer.get("refusals", {}))


# -- files ---------------------------------------------------------------------
def _fsync_write(path: Path, data: bytes) -> str:
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: Path,
    *,
    server_round: int,
    arrays: ArrayRecord,
    strategy: Any,
    history: list[dict[str, Any]] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint of ``server_round`` atomically; return ``latest.json``."""
    from safetensors.torch import save

    if server_round < 0:
        raise ValueError(f"`server_round` must be >= 0, got {server_round}")
    ckdir = Path(run_dir) / CHECKPOINT_DIR
    ckdir.mkdir(parents=True, exist_ok=True)
    rng_meta, rng_tensors = capture_rng()
    tensors = {k: v.detach().cpu().contiguous() for k, v in arrays.to_torch_state_dict().items()}
    clash = sorted(k for k in tensors if k.startswith(_RNG_PREFIX))
    if clash:
        raise ValueError(f"global state keys must not start with {_RNG_PREFIX!r}: {clash}")
    tensors.update(rng_tensors)
    stem = f"round-{server_round:04d}"
    body = {
        "version": _VERSION,
        "server_round": server_round,
        "strategy": strategy_state(strategy),
        "rng": rng_meta,
        "history": history or [],
        "meta": {**(meta or {}), "written_at": time.time()},
    }
    tensor_sha = _fsync_write(ckdir / f"{stem}.safetensors", save(tensors))
    json_sha = _fsync_write(ckdir / f"{stem}.json", json.dumps(body, default=float).encode("utf-8"))
    latest = {
        "version": _VERSION,
        "server_round": server_round,
        "tensors": f"{stem}.safetensors",
        "tensors_sha256": tensor_sha,
        "state": f"{stem}.json",
        "state_sha256": json_sha,
    }
    _fsync_write(ckdir / "latest.json", json.dumps(latest, indent=2).encode("utf-8"))
    _fsync_dir(ckdir)
    _prune(ckdir, keep=_KEEP)
    logger.info("checkpoint: round %s saved to %s", server_round, ckdir)
    return ckdir / "latest.json"


def _prune(ckdir: Path, *, keep: int) -> None:
    rounds = sorted({p.name.split(".")[0] for p in ckdir.glob("round-*.*")})
    for stem in rounds[:-keep]:
        for p in ckdir.glob(f"{stem}.*"):
            p.unlink(missing_ok=True)


def load_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The last complete checkpoint in ``run_dir``, or None when there is none.

    Raises :class:`~fednet.errors.ConfigError` when the files are damaged.
    """
    from safetensors.torch import load

    ckdir = Path(run_dir) / CHECKPOINT_DIR
    pointer = ckdir / "latest.json"
    if not pointer.is_file():
        return None
    try:
        latest = json.loads(pointer.read_text(encoding="utf-8"))
        raw_t = (ckdir / latest["tensors"]).read_bytes()
        raw_s = (ckdir / latest["state"]).read_bytes()
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise ConfigError(f"the checkpoint in {str(ckdir)!r} is unreadable: {e}") from e
    for name, raw, sha in (
        (latest["tensors"], raw_t, latest.get("tensors_sha256")),
        (latest["state"], raw_s, latest.get("state_sha256")),
    ):
        if hashlib.sha256(raw).hexdigest() != sha:
            raise ConfigError(
                f"checkpoint file {str(ckdir / name)!r} does not match its "
                "recorded SHA-256; it is damaged"
            )
    body = json.loads(raw_s)
    if body.get("version") != _VERSION:
        raise ConfigError(f"checkpoint version must be {_VERSION}, got {body.get('version')!r}")
    tensors = load(raw_t)
    rng_tensors = {k: v for k, v in tensors.items() if k.startswith(_RNG_PREFIX)}
    state = {k: v for k, v in tensors.items() if not k.startswith(_RNG_PREFIX)}
    return Checkpoint(
        server_round=int(body["server_round"]),
        arrays=ArrayRecord(state),
        strategy=body.get("strategy", {}),
        rng={"meta": body.get("rng", {}), "tensors": rng_tensors},
        history=list(body.get("history", [])),
        meta=dict(body.get("meta", {})),
    )


# -- the preset a checkpoint belongs to -----------------------------------------
_CLIENT_KEYS = (
    "dataset",
    "task",
    "text-column",
    "label-column",
    "partition",
    "num-partitions",
    "partitioner",
    "dirichlet-alpha",
    "lora-rank",
    "base-model",
)


def preset_fingerprint(cfg: Any) -> dict[str, Any]:
    """The settings of a :class:`~fednet.config.FederationConfig` that a resumed run
    must share with its checkpoint, as a flat JSON-safe ``{"key": value}``.

    Keys name preset settings (``lora.alpha-ratio``, ``clients[<id>].lora-rank``),
    with every client's task and base model resolved. Left out, so a resume may
    change them: ``rounds``, local steps, batch size, learning rate, lengths,
    timeouts, privacy budgets and hub settings.
    """
    fp: dict[str, Any] = {
        "federation.name": cfg.name,
        "federation.seed": cfg.seed,
        "federation.test-fraction": cfg.test_fraction,
        "federation.label-space": cfg.label_space,
        "lora.alpha-ratio": cfg.lora.alpha_ratio,
        "lora.target-modules": list(cfg.lora.target_modules),
        "strategy.name": cfg.strategy.name,
        "strategy.rank-aggregation": cfg.strategy.rank_aggregation,
        "strategy.lora-grouping": cfg.strategy.lora_grouping,
        "privacy.enabled": cfg.privacy.enabled,
        "privacy.dpsgd": cfg.privacy.dpsgd,
        "privacy.update-mode": cfg.privacy.update_mode,
        "clients": [c.id for c in cfg.clients],
    }
    for c in cfg.clients:
        for key in _CLIENT_KEYS:
            fp[f"clients[{c.id}].{key}"] = getattr(c, key.replace("-", "_"))
    return json.loads(json.dumps(fp))  # tuples as lists, as they come back from the file


def _preset_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """One line per setting that differs between ``saved`` and ``now``."""
    out = []
    had, has = list(saved.get("clients", [])), list(now.get("clients", []))
    gone = [c for c in had if c not in has]
    new = [c for c in has if c not in had]
    if gone:
        out.append(f"clients: checkpoint has {', '.join(gone)}, the preset does not")
    if new:
        out.append(f"clients: the preset adds {', '.join(new)}")
    if not gone and not new and had != has:
        out.append(f"clients: checkpoint order {had}, preset order {has}")
    dropped = tuple(f"clients[{c}]." for c in gone + new)
    for key in sorted(set(saved) | set(now)):
        if key == "clients" or key.startswith(dropped):
            continue
        if key not in saved:
            out.append(f"{key}: not in the checkpoint, preset {now[key]!r}")
        elif key not in now:
            out.append(f"{key}: checkpoint {saved[key]!r}, not in the preset")
        elif saved[key] != now[key]:
            out.append(f"{key}: checkpoint {saved[key]!r}, preset {now[key]!r}")
    return out


def check_resume(run_dir: Path, cfg: Any) -> Checkpoint | None:
    """The last checkpoint of ``run_dir`` if ``cfg`` may resume it, None if there is none.

    Raises
    ------
    ConfigError
        When the checkpoint is damaged, or was written under a preset whose
        fingerprint (:func:`preset_fingerprint`) differs from ``cfg``'s; the
        message names each changed setting with both values, e.g.
        ``clients[spam-1].lora-rank: checkpoint 8, preset 16``.
    """
    ckpt = load_checkpoint(run_dir)
    if ckpt is None:
        return None
    where = str(Path(run_dir) / CHECKPOINT_DIR)
    saved = ckpt.meta.get("preset")
    if isinstance(saved, dict):
        changes = _preset_changes(saved, preset_fingerprint(cfg))
        if changes:
            raise ConfigError(
                f"cannot resume the run in {where!r} with this preset; it differs from "
                "the preset the run was started with:\n  "
                + "\n  ".join(changes)
                + "\nresume with the run's own preset, or start a new run"
            )
    else:
        logger.warning(
            "resume: the checkpoint in %s holds no preset fingerprint (written by an "
            "older fednet); only the federation and strategy names are checked",
            where,
        )
    for key, mine in (("federation", cfg.name), ("strategy", cfg.strategy.name)):
        if key in ckpt.meta and ckpt.meta[key] != mine:
            raise ConfigError(
                f"the checkpoint in {str(run_dir)!r} is of {key} "
                f"{ckpt.meta[key]!r}, but the preset names {mine!r}"
            )
    return ckpt


# -- the server's use ----------------------------------------------------------
def resume_from(run_dir: Path, cfg: Any, strategy: Any, recorder: Any) -> Checkpoint | None:
    """Load the last checkpoint of ``run_dir`` into ``strategy``, RNGs and ``recorder``.

    Returns None (and logs a warning) when no round has completed yet, so the
    run starts from round 1. Raises :class:`~fednet.errors.ConfigError` when the
    checkpoint belongs to a different federation, strategy or preset
    (:func:`check_resume`).
    """
    ckpt = check_resume(run_dir, cfg)
    if ckpt is None:
        logger.warning("resume: no checkpoint in %s yet; starting from round 1", run_dir)
        return None
    restore_strategy(strategy, ckpt.strategy)
    restore_rng(ckpt.rng.get("meta", {}), ckpt.rng.get("tensors", {}))
    recorder.history = [h for h in ckpt.history if int(h.get("round", 0)) <= ckpt.server_round]
    logger.info(
        "resume: continuing after round %s of %s (checkpoint of %s)",
        ckpt.server_round,
        cfg.rounds,
        time.strftime("%H:%M:%S", time.localtime(ckpt.meta.get("written_at", 0))),
    )
    return ckpt


def checkpointing(
    hook: Callable[[Any], None],
    run_dir: Path,
    cfg: Any,
    strategy: Any,
    recorder: Any,
    *,
    resumed_from: int = 0,
) -> Callable[[Any], None]:
    """A round hook that runs ``hook``, then checkpoints the round."""
    fingerprint = preset_fingerprint(cfg)

    def on_round_end(outcome: Any) -> None:
        hook(outcome)
        save_checkpoint(
            run_dir,
            server_round=outcome.server_round,
            arrays=outcome.arrays,
            strategy=strategy,
            history=recorder.history,
            meta={
                "federation": cfg.name,
                "strategy": cfg.strategy.name,
                "rounds": cfg.rounds,
                "resumed_from": resumed_from,
                "preset": fingerprint,
            },
        )

    return on_round_end
