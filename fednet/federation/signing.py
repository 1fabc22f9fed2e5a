"""Clients sign their own releases; the server only forwards what they signed.

At the end of a run the server asks each client to sign the manifests of its
adapters (:data:`~fednet.protocol.RELEASE`: the unsigned manifest
and the very bytes of every file). The server drafts every field, so the
client checks each manifest before it signs it:

- it is its own: owner, name, kind, task, base model and rank are the
  client's, and it is not already signed;
- every file hashes to what the manifest says, and the adapter's ``r`` is the
  manifest's rank;
- every privacy claim is what the client's own privacy ledger says
  (:func:`privacy_problems`): ``epsilon``, ``update_epsilon`` and
  ``sketch_epsilon``, where set, equal the ledger's ε of all its releases, of
  its DP-SGD and update releases, and of its sketch releases; ``delta`` and
  ``accountant`` are the ledger's; and a client whose noise is reproducible
  (``privacy.reproducible-noise``) signs no ε without
  :data:`~fednet.privacy.randomness.NOT_VALID_NOTE`. A claim left unset
  (None) promises nothing and is signed as it is; an ε claimed by a client
  without a ledger, or without a release of that kind, is refused;
- every quality claim (``metrics``) is what the client sent the server in
  this run (:func:`metric_problems`, against the record
  :func:`~fednet.federation.private.record_released` keeps).

Then it signs with its Ed25519 owner key and answers with the signed
manifests only (:data:`~fednet.protocol.SIGNED`); one problem in any manifest
and it signs none. The key lives in the client's own state directory and
never leaves it.

Key location: the node config's ``owner-key`` (a PEM file the client brings),
else ``<key-root>/<client-id>.key`` (made on first use, mode 0600, in a 0700
directory), where the key root is the node's ``state-dir``/``keys`` in
deployment and the simulation's client key directory in simulation.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import ConfigRecord

from fednet.config import ClientConfig
from fednet.errors import IntegrityError, SignatureError
from fednet.hub.bundle import ADAPTER_CONFIG, check_files, sha256_hex
from fednet.hub.keys import Ed25519PrivateKey, sign_manifest, verify_manifest
from fednet.hub.manifest import Manifest
from fednet.hub.publish import ADAPTER_KINDS, adapter_name, client_key
from fednet.hub.trust import fingerprint
from fednet.privacy.randomness import NOT_VALID_NOTE

if TYPE_CHECKING:
    from fednet.privacy.ledger import PrivacyLedger

__all__ = [
    "client_ledger",
    "client_owner_key",
    "metric_problems",
    "owner_checks",
    "privacy_problems",
    "read_signed",
    "release_record",
    "sign_release",
]

_EPSILON_FIELDS: dict[str, str] = {
    "epsilon": "epsilon",
    "update_epsilon": "update-epsilon",
    "sketch_epsilon": "sketch-epsilon",
}
"""Each ε field of a manifest and the key of
:data:`fednet.federation.private.EPSILON_KINDS` (what the client reported) it claims."""

logger = logging.getLogger(__name__)

_FILE = ".file."


def client_owner_key(
    client_id: str, *, key_root: str | Path, node_config: Mapping[str, object]
) -> Ed25519PrivateKey:
    """The client's own signing key: ``owner-key`` of the node config, else its key root's."""
    from fednet.hub.keys import load_private_key

    given = node_config.get("owner-key")
    if given:
        return load_private_key(str(given))
    return client_key(key_root, client_id)


def release_record(releases: Sequence[tuple[Manifest, Mapping[str, bytes]]]) -> ConfigRecord:
    """The request to sign.

    ``<kind>`` holds the unsigned manifest's JSON, ``<kind>.file.<name>`` each
    file's bytes.
    """
    record: dict[str, str | bytes] = {}
    for manifest, files in releases:
        record[manifest.kind] = manifest.to_json()
        for name, data in files.items():
            record[f"{manifest.kind}{_FILE}{name}"] = bytes(data)
    return ConfigRecord(record)  # type: ignore[arg-type]


def client_ledger(state_dir: str | Path, client: ClientConfig) -> PrivacyLedger | None:
    """The client's own privacy ledger, as its rounds saved it; None when it has none.

    It is the ledger :class:`~fednet.federation.private.PrivateRound` keeps at
    :func:`~fednet.federation.private.ledger_path` for the client and the
    fingerprint of its data, read with the δ and accountant it was saved with.

    Raises
    ------
    ValueError
        If the ledger file exists but is not a ledger of ``client``.
    """
    from fednet.federation.private import data_fingerprint, ledger_path
    from fednet.privacy.ledger import PrivacyLedger

    path = ledger_path(Path(state_dir), client.id, data_fingerprint(client))
    if not path.is_file():
        return None
    ledger = PrivacyLedger.load(path)
    if ledger.client_id != client.id:
        raise ValueError(
            f"ledger {str(path)!r} belongs to client {ledger.client_id!r}, not {client.id!r}"
        )
    return ledger


def privacy_problems(
    draft: Manifest, ledger: PrivacyLedger | None, *, reproducible_noise: bool
) -> list[str]:
    """What in the privacy claims of ``draft`` the client's ledger does not back.

    Parameters
    ----------
    draft : Manifest
        The manifest the server asks the client to sign.
    ledger : PrivacyLedger or None
        The client's own ledger (:func:`client_ledger`); None when it has none,
        that is, when it never made a private release.
    reproducible_noise : bool
        Whether the client's noise is reproducible (``privacy.reproducible-noise``),
        which voids every ε it spent.

    Returns
    -------
    list of str
        One line per false claim, naming the manifest, the field, the value
        claimed and the ledger's; empty when every claim holds. A claim of
        ``epsilon`` (every release), ``update_epsilon`` (DP-SGD and update
        releases) or ``sketch_epsilon`` (sketch releases) holds when it is None,
        or when the ledger has releases of those kinds and their composed ε is
        the claim to ``math.isclose(rel_tol=1e-9, abs_tol=1e-12)``. When any ε
        is claimed, ``delta`` and ``accountant`` must be the ledger's, and with
        reproducible noise ``epsilon_note`` must be
        :data:`~fednet.privacy.randomness.NOT_VALID_NOTE`.

        The claims must also fit together as the manifest defines them: the
        total ``epsilon`` is claimed exactly when ``update_epsilon`` is (it is
        None when the weights are not private); when any ε is claimed and the
        ledger holds sketch releases, ``sketch_epsilon`` is claimed too; and
        ``epsilon_note`` is None or ``NOT_VALID_NOTE``, never free text.
    """
    problems: list[str] = []
    if draft.epsilon_note not in (None, NOT_VALID_NOTE):
        problems.append(
            f"{draft.name} carries epsilon_note={draft.epsilon_note!r}; the only note a "
            f"client signs is {NOT_VALID_NOTE!r}"
        )
    claimed = {f: getattr(draft, f) for f in _EPSILON_FIELDS if getattr(draft, f) is not None}
    if not claimed:
        return problems
    if (draft.epsilon is None) != (draft.update_epsilon is None):
        problems.append(
            f"{draft.name} claims epsilon={draft.epsilon!r} with "
            f"update_epsilon={draft.update_epsilon!r}: the total is claimed exactly when the "
            "weights' epsilon is"
        )
    if ledger is None:
        return problems + [
            f"{draft.name} claims {f}={v!r}, but the client has no privacy ledger"
            for f, v in claimed.items()
        ]
    from fednet.federation.private import EPSILON_KINDS, ledger_epsilons

    spent = ledger_epsilons(ledger)
    if draft.sketch_epsilon is None and "sketch-epsilon" in spent:
        problems.append(
            f"{draft.name} claims an epsilon but omits sketch_epsilon; its ledger has "
            f"{spent['sketch-epsilon']!r} for its sketches"
        )
    for field, value in claimed.items():
        truth = spent.get(_EPSILON_FIELDS[field])
        if truth is None:
            kinds = EPSILON_KINDS[_EPSILON_FIELDS[field]] or ("any",)
            problems.append(
                f"{draft.name} claims {field}={value!r}, but the client's ledger has no "
                f"{'/'.join(kinds)} release"
            )
        elif not math.isclose(value, truth, rel_tol=1e-9, abs_tol=1e-12):
            problems.append(f"{draft.name} claims {field}={value!r}, its ledger has {truth!r}")
    if draft.delta is None or not math.isclose(
        draft.delta, ledger.delta, rel_tol=1e-9, abs_tol=0.0
    ):
        problems.append(
            f"{draft.name} claims delta={draft.delta!r}, its ledger has {ledger.delta!r}"
        )
    if draft.accountant != ledger.accountant_name:
        problems.append(
            f"{draft.name} claims accountant={draft.accountant!r}, "
            f"its ledger has {ledger.accountant_name!r}"
        )
    if reproducible_noise and draft.epsilon_note != NOT_VALID_NOTE:
        problems.append(
            f"{draft.name} claims an epsilon with epsilon_note={draft.epsilon_note!r}, but the "
            f"client's noise is reproducible: its ledger's epsilon needs the note "
            f"{NOT_VALID_NOTE!r}"
        )
    return problems


def metric_problems(
    draft: Manifest, released: Mapping[str, Mapping[str, float]] | None
) -> list[str]:
    """What in the quality claims (``metrics``) of ``draft`` the client never released.

    Parameters
    ----------
    draft : Manifest
        The manifest the server asks the client to sign.
    released : mapping or None
        What the client itself sent the server in this run
        (:func:`fednet.federation.private.released_metrics`): ``"evaluate"``,
        its last evaluation of the global model; ``"personalized"``, the
        metrics of its personalisation round; ``"profile"``, its profile.
        None when it kept no record.

    Returns
    -------
    list of str
        One line per claim it cannot back: a shared adapter's ``accuracy``
        and ``loss`` must be its last evaluation's, a personalised adapter's
        ``accuracy`` its personalisation round's, and ``num_examples`` the
        count its profile sent; any other metric is refused. Values compare
        with ``math.isclose(rel_tol=1e-9, abs_tol=1e-12)``.
    """
    sent = released or {}
    source = "personalized" if draft.kind == "personalized" else "evaluate"
    truth: dict[str, float | None] = {
        "accuracy": sent.get(source, {}).get("accuracy"),
        "num_examples": sent.get("profile", {}).get("num-examples"),
    }
    if source == "evaluate":
        truth["loss"] = sent.get(source, {}).get("loss")
    problems = []
    for key, value in sorted(draft.metrics.items()):
        if key not in truth:
            problems.append(
                f"{draft.name} claims metric {key}={value!r}, which the client never reports"
            )
            continue
        want = truth[key]
        if want is None:
            problems.append(
                f"{draft.name} claims {key}={value!r}, but the client sent no {key} in this run"
            )
        elif not math.isclose(float(value), float(want), rel_tol=1e-9, abs_tol=1e-12):
            problems.append(f"{draft.name} claims {key}={value!r}, the client sent {want!r}")
    return problems


def owner_checks(
    run_dir: str | Path, *, state_dir: str | Path | None = None
) -> Callable[[Manifest], list[str]]:
    """The privacy checks a client makes before it signs, for an owner who signs
    a finished run's drafts with keys it holds (``fednet hub push --keys-dir``).

    The drafts' ε come from the run's ``summary.json``, the server's copy of
    the clients' metrics; the check holds them to each client's own ledger,
    as :func:`sign_release` does (:func:`privacy_problems`).

    Parameters
    ----------
    run_dir : str or Path
        A finished run. Its summary's ``preset`` names the clients (their data
        fixes where each ledger is kept); a run without one backs no ε claim.
    state_dir : str or Path, optional
        Where the clients keep their ledgers (default: the preset's
        ``federation.state-dir``, else ``$FEDNET_STATE_DIR`` or
        ``~/.fednet/state``).

    Returns
    -------
    callable
        Draft manifest -> the problems of its privacy claims, one line each
        (empty when its ledger backs every claim). A draft that claims no ε
        needs no ledger.

    Raises
    ------
    ValueError
        If the run has no ``summary.json``; :class:`~fednet.errors.ConfigError`
        if its preset cannot be loaded.
    """
    from fednet.config import default_state_dir, load_preset

    summary_path = Path(run_dir) / "summary.json"
    if not summary_path.is_file():
        raise ValueError(f"`run_dir` {str(run_dir)!r} has no summary.json; is the run finished?")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    preset = summary.get("preset")
    cfg = load_preset(preset) if preset else None
    state = Path(
        state_dir if state_dir is not None else (cfg.state_dir if cfg else default_state_dir())
    ).expanduser()
    reproducible = bool(summary.get("privacy", {}).get("reproducible_noise")) or bool(
        cfg and cfg.privacy.reproducible_noise
    )

    def check(draft: Manifest) -> list[str]:
        if not any(getattr(draft, f) is not None for f in _EPSILON_FIELDS):
            return privacy_problems(draft, None, reproducible_noise=reproducible)
        if cfg is None:
            return [
                f"{draft.name} claims an epsilon, but the run names no preset to find "
                f"client {draft.owner!r}'s ledger by"
            ]
        if draft.owner not in {c.id for c in cfg.clients}:
            return [f"{draft.name}: client {draft.owner!r} is not in the preset {preset!r}"]
        ledger = client_ledger(state, cfg.client(draft.owner))
        return privacy_problems(draft, ledger, reproducible_noise=reproducible)

    return check


def sign_release(
    record: ConfigRecord,
    client: ClientConfig,
    key: Ed25519PrivateKey,
    *,
    ledger: PrivacyLedger | None,
    reproducible_noise: bool,
    keeps_personalized: bool,
    released: Mapping[str, Mapping[str, float]] | None,
) -> ConfigRecord:
    """Check and sign a release request as ``client``; the reply is ``<kind>`` -> signed JSON.

    Parameters
    ----------
    record : ConfigRecord
        The request (:func:`release_record`).
    client : ClientConfig
        The client that signs.
    key : Ed25519PrivateKey
        Its owner key (:func:`client_owner_key`).
    ledger : PrivacyLedger or None
        The client's privacy ledger (:func:`client_ledger`), None when it has
        none: every privacy claim is checked against it (:func:`privacy_problems`).
    reproducible_noise : bool
        The client's ``privacy.reproducible-noise``.
    keeps_personalized : bool
        Whether the client keeps its personalised adapter to itself
        (:func:`fednet.federation.private.keeps_personalized`: central mode
        without DP-SGD). A ``personalized`` release is then refused: the client
        never sent it, so the server built it, e.g. from unnoised updates.
    released : mapping or None
        The metrics the client sent the server in this run; every quality
        claim is checked against them (:func:`metric_problems`).

    Raises
    ------
    ValueError
        Naming every manifest that is not this client's, whose rank, task or
        base model is not the client's, whose files do not hash to it, or whose
        privacy claims the client's ledger does not back (with the field, the
        value claimed and the ledger's). Nothing is signed then.
    """
    problems: list[str] = []
    signed: dict[str, str] = {}
    for kind in [k for k in record if _FILE not in k]:
        if kind not in ADAPTER_KINDS:
            problems.append(f"unknown release kind {kind!r}")
            continue
        try:
            draft = Manifest.from_json(str(record[kind]))
        except (TypeError, ValueError) as e:
            problems.append(f"{kind}: {e}")
            continue
        prefix = f"{kind}{_FILE}"
        files = {k[len(prefix) :]: record[k] for k in record if k.startswith(prefix)}
        expected = {
            "name": adapter_name(client.id, kind),
            "owner": client.id,
            "kind": kind,
            "task": client.task,
            "base_model": client.base_model,
        }
        wrong = [
            f"{field} is {getattr(draft, field)!r}, not {want!r}"
            for field, want in expected.items()
            if getattr(draft, field) != want
        ]
        try:
            check_files(draft, {k: bytes(v) for k, v in files.items()})  # type: ignore[arg-type]
            config = json.loads(bytes(files[ADAPTER_CONFIG]))  # type: ignore[arg-type]
            if config.get("r") != draft.rank:
                wrong.append(f"rank is {draft.rank}, the adapter has r={config.get('r')}")
        except (KeyError, ValueError, TypeError, IntegrityError) as e:
            wrong.append(str(e))
        if kind == "personalized" and keeps_personalized:
            wrong.append(
                "the client keeps its personalised adapter to itself in central mode; "
                "this one did not come from it"
            )
        if kind == "personalized" and draft.rank != client.lora_rank:
            wrong.append(f"rank is {draft.rank}, the client trains rank {client.lora_rank}")
        if draft.owner_public_key or draft.signature or draft.rotation:
            wrong.append("it is already signed")
        wrong += privacy_problems(draft, ledger, reproducible_noise=reproducible_noise)
        wrong += metric_problems(draft, released)
        if wrong:
            problems.append(f"{kind}: " + "; ".join(wrong))
            continue
        signed[kind] = sign_manifest(draft, key).to_json()
        logger.info(
            "client %s signed %s (%d files: %s)",
            client.id,
            draft.name,
            len(files),
            ", ".join(f"{n}={sha256_hex(bytes(d))[:12]}" for n, d in files.items()),  # type: ignore[arg-type]
        )
    if problems:
        raise ValueError(f"client {client.id} refuses to sign: " + "; ".join(problems))
    return ConfigRecord(signed)  # type: ignore[arg-type]


def read_signed(
    record: ConfigRecord,
    releases: Sequence[tuple[Manifest, Mapping[str, bytes]]],
    client_id: str,
) -> list[Manifest]:
    """Check the client's signed manifests against what was asked; return them.

    Raises
    ------
    SignatureError
        If a manifest is missing, does not verify, or differs from the
        unsigned one in anything but its key and signature.
    """
    out = []
    for draft, _ in releases:
        text = record.get(draft.kind)
        if not isinstance(text, str):
            raise SignatureError(f"client {client_id} did not sign {draft.name}")
        manifest = Manifest.from_json(text)
        verify_manifest(manifest)
        if (
            manifest.signing_payload()
            != Manifest.from_dict(
                {**draft.to_dict(), "owner_public_key": manifest.owner_public_key}
            ).signing_payload()
        ):
            raise SignatureError(
                f"client {client_id} signed a manifest of {draft.name} other than the one asked"
            )
        logger.info(
            "%s signed by its owner %s (key %s)",
            manifest.name,
            client_id,
            fingerprint(manifest.owner_public_key),
        )
        out.append(manifest)
    return out
