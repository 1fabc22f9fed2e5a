"""Publish a finished run's adapters to a hub.

For every client in ``summary.json`` two adapters are published, each signed
with the client's own Ed25519 key:

- ``<client-id>-shared`` (``kind="shared"``): the federation's adapter and
  head for the client's task from the last round,
  ``rounds/<r>/<base-model>/<task>/``, at the group's (largest) rank;
- ``<client-id>-personalized`` (``kind="personalized"``): the client's
  fine-tuned copy, ``personalized/<client-id>/``.

Each gets the client's DP capability sketch (``sketch.safetensors``) when the
run holds one, and a manifest filled from the run: base model, rank, task,
label names, round, accuracy and loss, ε and δ spent.

Two ways to sign. In a federation each client signs its own release inside its
ClientApp (:func:`client_releases` is what it is asked to sign; see
:mod:`fednet.federation.signing`), the run keeps the signed manifests in
``signed/`` and :func:`publish_signed_run` forwards them; nobody else holds a
client key. :func:`publish_run` signs with keys in ``keys_dir`` instead, for
whoever holds them all (one owner publishing its own run, the benchmark): keys
are ``<client-id>.key`` (PKCS#8 PEM, mode 0600, directory 0700) beside
``<client-id>.pub``, generated on first use, so later runs publish under the
same key their names are bound to.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from safetensors import safe_open

from fednet.hub.bundle import ADAPTER_CONFIG, HEAD_FILE, SKETCH_FILE, prepare_unsigned
from fednet.hub.client import HubClient, open_hub
from fednet.hub.keys import (
    Ed25519PrivateKey,
    encode_public_key,
    generate_private_key,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)
from fednet.hub.manifest import Manifest, check_name
from fednet.hub.store import HubStore
from fednet.hub.trust import TrustStore

__all__ = [
    "ADAPTER_KINDS",
    "adapter_name",
    "SIGNED_DIR",
    "client_key",
    "client_releases",
    "contribution_score",
    "CONTRIBUTIONS_FILE",
    "find_sketch",
    "keys_dir_trust",
    "publish_adapter_dir",
    "publish_run",
    "publish_signed_run",
]

logger = logging.getLogger(__name__)

ADAPTER_KINDS: tuple[str, ...] = ("shared", "personalized")
"""The kinds of adapter a run publishes per client."""

SIGNED_DIR = "signed"
"""Run subdirectory of the manifests its clients signed, one ``<name>.json`` each."""

_SKETCH_LOCATIONS = (
    "sketches/{cid}.safetensors",
    "sketches/{cid}/" + SKETCH_FILE,
    "personalized/{cid}/" + SKETCH_FILE,
    "clients/{cid}/" + SKETCH_FILE,
)


def adapter_name(client_id: str, kind: str) -> str:
    """Hub name of a client's adapter: ``<client-id>-<kind>``.

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`ADAPTER_KINDS` or the name is not a
        valid hub name.
    """
    if kind not in ADAPTER_KINDS:
        raise ValueError(f"`kind` must be one of {list(ADAPTER_KINDS)}, got {kind!r}")
    return check_name("adapter name", f"{client_id}-{kind}")


def client_key(keys_dir: str | Path, client_id: str) -> Ed25519PrivateKey:
    """Load ``<keys_dir>/<client-id>.key``, generating and saving it on first use."""
    check_name("client id", client_id)
    root = Path(keys_dir)
    path = root / f"{client_id}.key"
    if path.exists():
        return load_private_key(path)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_private_key()
    save_private_key(key, path)
    save_public_key(key, root / f"{client_id}.pub")
    logger.info("generated owner key for %s in %s", client_id, path)
    return key


def keys_dir_trust(keys_dir: str | Path) -> TrustStore:
    """An in-memory trust store pinning every ``<client-id>.pub`` in ``keys_dir``.

    For a process that plays every client and the reader at once (the
    benchmark, a demo): it trusts exactly the keys it made itself.
    """
    pinned: dict[str, list[str]] = {}
    for path in sorted(Path(keys_dir).glob("*.pub")):
        pinned[check_name("client id", path.stem)] = [encode_public_key(load_public_key(path))]
    return TrustStore(None, keys=pinned)


def find_sketch(run_dir: str | Path, client_id: str) -> Path | None:
    """The client's sketch file in a run directory, if the run released one."""
    root = Path(run_dir)
    for pattern in _SKETCH_LOCATIONS:
        path = root / pattern.format(cid=client_id)
        if path.is_file():
            return path
    return None


def _last_round(run_dir: Path) -> int:
    rounds = [int(p.name) for p in (run_dir / "rounds").glob("*") if p.name.isdecimal()]
    if not rounds:
        raise ValueError(f"run directory {str(run_dir)!r} has no rounds/<r>/ adapters")
    return max(rounds)


def _label_names(adapter_dir: Path) -> tuple[str, ...]:
    head = adapter_dir / HEAD_FILE
    if not head.is_file():
        return ()
    with safe_open(str(head), "pt") as f:
        meta = f.metadata() or {}
    return tuple(json.loads(meta.get("label_names", "[]")))


def _rank(adapter_dir: Path) -> int:
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    return int(config["r"])


def _metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def publish_adapter_dir(
    adapter_dir: str | Path,
    hub: HubStore | HubClient,
    *,
    name: str,
    owner: str,
    key: Ed25519PrivateKey,
    kind: str = "shared",
    round: int = 0,
    task: str | None = None,
    base_model: str | None = None,
) -> Manifest:
    """Publish one adapter directory, describing it from its own files.

    Rank comes from ``adapter_config.json``; task, label names and base model
    from the metadata :func:`fednet.models.save_adapter` writes, unless given.

    Raises
    ------
    ValueError
        If the base model or task is neither given nor recorded in the files.
    """
    root = Path(adapter_dir)
    head = _metadata(root / HEAD_FILE)
    weights = _metadata(root / "adapter_model.safetensors")
    base = base_model or weights.get("fednet.base_model") or head.get("base_model")
    task = task or head.get("task")
    if not base or not task:
        raise ValueError(
            f"adapter {str(root)!r} records no base model or task; give `base_model` and `task`"
        )
    draft = Manifest(
        name=name,
        owner=owner,
        kind=kind,
        round=round,
        base_model=base,
        task=task,
        rank=_rank(root),
        label_names=_label_names(root),
    )
    return hub.publish(root, draft, key)


def _metrics(info: Mapping[str, Any], kind: str) -> dict[str, float]:
    accuracy = info.get("personalized_accuracy" if kind == "personalized" else "accuracy")
    values = {
        "accuracy": accuracy,
        "loss": info.get("loss") if kind == "shared" else None,
        "num_examples": info.get("num_examples"),
    }
    out = {}
    for key, value in values.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


def _epsilon(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) and value >= 0 else None


def _privacy(info: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's privacy fields from a client's summary entry and the run's privacy.

    The weights' ε (and the composed total) are set only when the run says its
    updates were private (``updates_private``); a sketch-only run carries its
    ``sketch_epsilon`` alone.
    """
    private = run.get("updates_private") is True
    update = _epsilon(info.get("update_epsilon")) if private else None
    total = _epsilon(info.get("epsilon")) if update is not None else None
    sketch = _epsilon(info.get("sketch_epsilon"))
    any_eps = update is not None or sketch is not None
    delta = run.get("delta")
    accountant = run.get("accountant")
    note = run.get("epsilon_note")
    return {
        "epsilon": total,
        "update_epsilon": update,
        "sketch_epsilon": sketch,
        "delta": float(delta) if any_eps and isinstance(delta, int | float) else None,
        "accountant": str(accountant) if any_eps and accountant else None,
        "epsilon_note": str(note) if note else None,
    }


CONTRIBUTIONS_FILE = "contributions.json"
"""The run's contribution ledger (written by the server's run recorder)."""


def contribution_score(run_dir: str | Path, client_id: str) -> dict[str, Any]:
    """The ``contribution`` and ``contribution_method`` manifest fields of ``client_id``.

    The score is the mean of the client's ``contribution`` over the ledger's
    rows (one per round it sent an update; a rejected update counts with share
    0), under the ledger's ``method``. Both are None when the run has no ledger
    or no row of the client with a score.

    Raises
    ------
    ValueError
        If ``contributions.json`` exists but is not a ledger.
    """
    path = Path(run_dir) / CONTRIBUTIONS_FILE
    none: dict[str, Any] = {"contribution": None, "contribution_method": None}
    if not path.is_file():
        return none
    try:
        ledger = json.loads(path.read_text(encoding="utf-8"))
        method, rows = ledger["method"], ledger["rows"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{str(path)!r} is not a contribution ledger: {e}") from e
    scores = [
        float(r["contribution"])
        for r in rows
        if isinstance(r, Mapping)
        and r.get("client") == client_id
        and isinstance(r.get("contribution"), int | float)
        and not isinstance(r.get("contribution"), bool)
        and math.isfinite(r["contribution"])
    ]
    if not scores or not isinstance(method, str) or not method:
        return none
    return {"contribution": sum(scores) / len(scores), "contribution_method": method}


def _stage(adapter_dir: Path, sketch: Path | None, staging: Path) -> Path:
    out = staging / adapter_dir.name
    out.mkdir()
    for path in adapter_dir.iterdir():
        if path.is_file() and not path.name.startswith("."):
            shutil.copyfile(path, out / path.name)
    if sketch is not None:
        shutil.copyfile(sketch, out / SKETCH_FILE)
    return out


def publish_run(
    run_dir: str | Path,
    hub: HubStore | HubClient | str | Path,
    *,
    keys_dir: str | Path,
    vet: Callable[[Manifest], Sequence[str]] | None,
    clients: Iterable[str] | None = None,
    kinds: Iterable[str] = ADAPTER_KINDS,
    token: str | None = None,
    sketches: Mapping[str, str | Path] | None = None,
    allow_attacked: bool = False,
) -> list[Manifest]:
    """Publish every client's shared and personalised adapter of a run.

    Parameters
    ----------
    run_dir : str or Path
        A directory written by ``fednet simulate`` (``summary.json``,
        ``rounds/``, ``personalized/``).
    hub : HubStore, HubClient, str or Path
        Where to publish; a string or path is opened with
        :func:`~fednet.hub.open_hub`.
    keys_dir : str or Path
        Directory of the clients' owner keys (see :func:`client_key`).
    vet : callable or None
        Draft manifest -> the problems of its claims, checked before anything
        is signed: the same privacy checks a client makes before it signs
        (:func:`fednet.federation.signing.owner_checks`, what ``fednet hub
        push --keys-dir`` passes). ``None`` signs the summary's claims
        unchecked; only a benchmark that plays every owner on its own
        temporary hub passes it, by name.
    clients : iterable of str, optional
        Publish only these clients (default: all in ``summary.json``).
    kinds : iterable of str
        Which of :data:`ADAPTER_KINDS` to publish.
    token : str, optional
        Write token when ``hub`` is a URL.
    sketches : mapping, optional
        Client id to a sketch file, used instead of the run's own.
    allow_attacked : bool
        Publish a run that had benchmark attack clients. Only for a benchmark
        that measures the attack on its own temporary hub
        (:mod:`fednet.bench.contribution_routing`); ``fednet hub push`` never
        sets it. The run's attackers are logged.

    Returns
    -------
    list[Manifest]
        The stored manifests, in client then kind order. A client whose
        adapter directory is missing is logged and skipped.

    Raises
    ------
    ValueError
        If ``run_dir`` has no ``summary.json`` or no round adapters, a
        requested client is not in it, or ``vet`` finds a problem in any draft
        (every problem is named; nothing is published then).
    """
    root = Path(run_dir)
    summary_path = root / "summary.json"
    if not summary_path.is_file():
        raise ValueError(f"`run_dir` {str(root)!r} has no summary.json; is the run finished?")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if not allow_attacked:
        refuse_attacked_run(root, summary)
    elif summary.get("attacks"):
        logger.warning("publishing attacked run %s for a benchmark: %s", root, summary["attacks"])
    infos: Mapping[str, Any] = summary.get("clients", {})
    wanted = sorted(infos) if clients is None else list(clients)
    unknown = [c for c in wanted if c not in infos]
    if unknown:
        raise ValueError(f"clients {unknown} are not in the run; it has {sorted(infos)}")
    kinds = list(kinds)
    for kind in kinds:
        adapter_name("x", kind)
    last = _last_round(root)
    target = open_hub(hub, token=token) if isinstance(hub, str | Path) else hub
    published: list[Manifest] = []
    try:
        with tempfile.TemporaryDirectory(prefix=".publish-", dir=root) as tmp:
            drafts = []
            for cid in wanted:
                sketch = (sketches or {}).get(cid) or find_sketch(root, cid)
                drafts += _client_drafts(
                    root,
                    cid,
                    infos[cid],
                    kinds,
                    last,
                    Path(tmp),
                    None if sketch is None else Path(sketch),
                    summary.get("privacy", {}),
                )
            if vet is not None:
                problems = [p for draft, _ in drafts for p in vet(draft)]
                if problems:
                    raise ValueError(
                        f"nothing of {str(root)!r} was published: " + "; ".join(problems)
                    )
            published = [
                target.publish(staged, draft, client_key(keys_dir, draft.owner))
                for draft, staged in drafts
            ]
    finally:
        if target is not hub:
            target.close()
    logger.info("published %d adapters of %s", len(published), root)
    return published


def client_releases(
    run_dir: str | Path,
    client_id: str,
    *,
    kinds: Iterable[str] = ADAPTER_KINDS,
    sketch: str | Path | None = None,
) -> list[tuple[Manifest, dict[str, bytes]]]:
    """The unsigned manifests and files of one client's adapters in a finished run.

    This is what the client is asked to sign (it never leaves the client's key
    with anyone else); see :mod:`fednet.federation.signing`.

    Raises
    ------
    ValueError
        If the run is unfinished or the client is not in it.
    """
    root = Path(run_dir)
    summary_path = root / "summary.json"
    if not summary_path.is_file():
        raise ValueError(f"`run_dir` {str(root)!r} has no summary.json; is the run finished?")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    info = summary.get("clients", {}).get(client_id)
    if info is None:
        raise ValueError(f"client {client_id!r} is not in the run {str(root)!r}")
    found = sketch or find_sketch(root, client_id)
    with tempfile.TemporaryDirectory(prefix=".release-", dir=root) as tmp:
        return [
            prepare_unsigned(staged, draft)
            for draft, staged in _client_drafts(
                root,
                client_id,
                info,
                list(kinds),
                _last_round(root),
                Path(tmp),
                None if found is None else Path(found),
                summary.get("privacy", {}),
            )
        ]


def _client_drafts(
    root: Path,
    cid: str,
    info: Mapping[str, Any],
    kinds: list[str],
    last_round: int,
    staging: Path,
    sketch: Path | None,
    run_privacy: Mapping[str, Any],
) -> list[tuple[Manifest, Path]]:
    dirs = {
        "shared": root / "rounds" / str(last_round) / str(info["base_model"]) / str(info["task"]),
        "personalized": root / "personalized" / cid,
    }
    privacy = _privacy(info, run_privacy)
    score = contribution_score(root, cid)
    out = []
    for kind in kinds:
        source = dirs[kind]
        if not (source / ADAPTER_CONFIG).is_file():
            logger.warning("no %s adapter for %s at %s; skipped", kind, cid, source)
            continue
        draft = Manifest(
            name=adapter_name(cid, kind),
            base_model=str(info["base_model"]),
            rank=_rank(source),
            task=str(info["task"]),
            owner=cid,
            label_names=_label_names(source),
            round=last_round,
            kind=kind,
            metrics=_metrics(info, kind),
            **privacy,
            **score,
        )
        stage = staging / f"{cid}-{kind}"
        stage.mkdir()
        out.append((draft, _stage(source, sketch, stage)))
    if sketch is None:
        logger.info("run has no sketch for %s; its adapters are published without one", cid)
    return out


def refuse_attacked_run(run_dir: Path, summary: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` if the run had benchmark attack clients (``summary["attacks"]``).

    A run with a label-flipping or backdoor client (``[[clients]] attack``) exists to
    measure robust aggregation; its adapters never go to a hub.
    """
    attacks = summary.get("attacks") or {}
    if attacks:
        named = ", ".join(f"{c} ({a})" for c, a in sorted(attacks.items()))
        raise ValueError(
            f"run {str(run_dir)!r} had attack clients ({named}); an attacked run is never published"
        )


def publish_signed_run(
    run_dir: str | Path, hub: HubStore | HubClient | str | Path, *, token: str | None = None
) -> list[Manifest]:
    """Forward the manifests the clients signed (``<run>/signed/``) to a hub.

    Only a run whose clients signed their own releases has them (see
    :func:`fednet.federation.server.collect_signatures`); nobody but the
    clients held a key. The files are re-read from the run and must still
    match what the clients signed.

    Raises
    ------
    ValueError
        If the run has no signed manifests.
    """
    root = Path(run_dir)
    summary_path = root / "summary.json"
    if summary_path.is_file():
        refuse_attacked_run(root, json.loads(summary_path.read_text(encoding="utf-8")))
    signed_dir = root / SIGNED_DIR
    paths = sorted(signed_dir.glob("*.json"))
    if not paths:
        raise ValueError(f"run {str(root)!r} has no client-signed manifests in {SIGNED_DIR}/")
    target = open_hub(hub, token=token) if isinstance(hub, str | Path) else hub
    published = []
    try:
        by_client: dict[str, list[Manifest]] = {}
        for path in paths:
            manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
            by_client.setdefault(manifest.owner, []).append(manifest)
        for cid, manifests in sorted(by_client.items()):
            kinds = [m.kind for m in manifests]
            releases = {m.name: files for m, files in client_releases(root, cid, kinds=kinds)}
            for manifest in manifests:
                published.append(target.publish_signed(manifest, releases[manifest.name]))
    finally:
        if target is not hub:
            target.close()
    return published
