"""Clients sign their own releases; the server only forwards what they signed.

At the end of a run the server asks each client to sign the manifests of its
adapters (:data:`~fednet.protocol.RELEASE`: the unsigned manifest
and the very bytes of every file). The client checks that each manifest is
its own (owner, name, task, base model, rank) and that every file hashes to
what the manifest says, then signs with its Ed25519 owner key and answers
with the signed manifests only (:data:`~fednet.protocol.SIGNED`).
The key lives in the client's own state directory and never leaves it.

Key location: the node config's ``owner-key`` (a PEM file the client brings),
else ``<key-root>/<client-id>.key`` (made on first use, mode 0600, in a 0700
directory), where the key root is the node's ``state-dir``/``keys`` in
deployment and the simulation's client key directory in simulation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from flwr.app import ConfigRecord

from fednet.config import ClientConfig
from fednet.errors import IntegrityError, SignatureError
from fednet.hub.bundle import ADAPTER_CONFIG, check_files, sha256_hex
from fednet.hub.keys import Ed25519PrivateKey, sign_manifest, verify_manifest
from fednet.hub.manifest import Manifest
from fednet.hub.publish import ADAPTER_KINDS, adapter_name, client_key
from fednet.hub.trust import fingerprint

__all__ = [
    "client_owner_key",
    "read_signed",
    "release_record",
    "sign_release",
]

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


def sign_release(
    record: ConfigRecord, client: ClientConfig, key: Ed25519PrivateKey
) -> ConfigRecord:
    """Check and sign a release request as ``client``; the reply is ``<kind>`` -> signed JSON.

    Raises
    ------
    ValueError
        Naming every manifest that is not this client's, whose rank, task or
        base model is not the client's, or whose files do not hash to it.
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
        if kind == "personalized" and draft.rank != client.lora_rank:
            wrong.append(f"rank is {draft.rank}, the client trains rank {client.lora_rank}")
        if draft.owner_public_key or draft.signature or draft.rotation:
            wrong.append("it is already signed")
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
