"""The manifest that describes, hashes and signs one published adapter version.

A manifest names an adapter, records where it came from (owner, round, base
model, privacy cost) and lists the sha256 of every file. The owner signs a
canonical JSON form of it, so any change to a field or a file is detected.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal

from fednet.checks import check_int
from fednet.names import check_name

__all__ = [
    "Manifest",
    "VersionSpec",
    "SIGNATURE_EXCLUDED_FIELDS",
    "SIGNED_WHEN_SET",
    "check_name",
    "check_filename",
    "parse_version",
    "utc_now_iso",
]

VersionSpec = int | Literal["latest"]
"""A concrete version number (1, 2, ...) or ``"latest"``."""

SIGNATURE_EXCLUDED_FIELDS: tuple[str, ...] = ("signature", "version", "rotation")

SIGNED_WHEN_SET: tuple[str, ...] = ("contribution", "contribution_method")
"""Signed fields left out of the payload while unset (None), so that a manifest
without them signs the same bytes as before they existed; once set they are
signed like any other field, and removing them breaks the signature."""
"""Fields left out of the signed payload.

``version`` is assigned by the store after the owner has signed, so it is the
store's sequence number, not a claim of the owner. ``rotation`` is itself a
signature, by the name's previous key (see :mod:`fednet.hub.trust`).
"""

_FILENAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def check_filename(key: str, value: object) -> str:
    """Return ``value`` if it is a plain file name with no directory part."""
    if not isinstance(value, str):
        raise TypeError(f"`{key}` must be a str, got {type(value).__name__} {value!r}")
    if not _FILENAME_RE.fullmatch(value) or value.startswith(".") or ".." in value:
        raise ValueError(
            f"`{key}` must be a plain file name (letters, digits, '.', '_', '-'; "
            f"no directories, not hidden), got {value!r}"
        )
    return value


def parse_version(value: object) -> VersionSpec:
    """Turn ``value`` (an int, ``"latest"`` or a decimal string) into a version spec.

    Raises
    ------
    ValueError
        If ``value`` is neither a positive integer nor ``"latest"``.
    """
    if value == "latest":
        return "latest"
    if isinstance(value, str) and value.isdecimal():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"`version` must be a positive integer or 'latest', got {value!r}")


def utc_now_iso() -> str:
    """Return the current UTC time as ISO 8601 with a ``Z`` suffix."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_str(key: str, value: object, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"`{key}` must be a str, got {type(value).__name__} {value!r}")
    if not empty and not value:
        raise ValueError(f"`{key}` must be a non-empty string, got {value!r}")
    return value


def _check_float(key: str, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"`{key}` must be a number, got {type(value).__name__} {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"`{key}` must be finite, got {value!r}")
    return result


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """Description, file hashes and owner signature of one adapter version.

    The owner's signature is its word for every signed field, the privacy
    fields included. A run's server drafts them from its copy of the clients'
    metrics; each client checks ``epsilon``, ``update_epsilon``,
    ``sketch_epsilon``, ``delta`` and ``accountant`` against its own privacy
    ledger before it signs, requires the claims to fit together (the total
    exactly with the weights' ε, the sketch ε whenever its ledger has one),
    accepts no ``epsilon_note`` but the reproducible-noise one (required when
    its noise is reproducible), and refuses a claim its ledger does not back
    (:mod:`fednet.federation.signing`).

    Parameters
    ----------
    name : str
        Adapter name, a URL-safe identifier shared by all its versions.
    base_model : str
        The base model the LoRA adapter was trained on.
    rank : int
        LoRA rank ``r``; must match ``adapter_config.json``.
    task : str
        Task the adapter (and its head) serves; a safe identifier like ``name``.
    owner : str
        Client id of the publisher; its signing key is pinned per owner.
    version : int
        Assigned by the store on publish; ``0`` means not yet published.
    label_names : tuple[str, ...]
        Class labels of the head, in output order.
    round : int
        Federated round that produced the adapter.
    kind : str
        ``"shared"``, ``"personalized"`` or another free-form kind.
    metrics : dict[str, float]
        Finite scalar metrics (accuracy, loss, ...).
    epsilon : float or None
        Composed ε of every release the owner made (updates and sketch) at
        ``delta``; None when the adapter's weights are not private.
    update_epsilon : float or None
        ε of the releases behind the weights (DP-SGD, noised or centrally
        noised updates); None when the weights are not private.
    sketch_epsilon : float or None
        ε of the owner's DP capability sketch releases; None without a sketch.
    delta : float or None
        δ of every ε above.
    accountant : str or None
        Name of the accountant that composed them (e.g. ``"rdp"``).
    epsilon_note : str or None
        Set when the ε values do not hold, e.g. "epsilon not valid:
        reproducible noise" for a run whose noise can be regenerated.
    sketch : str or None
        File name of the DP capability sketch, if any; must be in ``files``.
    contribution : float or None
        The owner's contribution score from the run's contribution ledger
        (``contributions.json``): its mean share of the aggregate update over
        the rounds it took part in, as the server estimated it. Signed by the
        owner; the server checks that it was signed unchanged. None when the
        run kept no ledger.
    contribution_method : str or None
        How ``contribution`` was estimated (e.g. ``"gradient-projection"``);
        set exactly when ``contribution`` is.
    created_at : str
        ISO 8601 UTC time of creation.
    files : dict[str, str]
        File name to lowercase sha256 hex of its contents.
    owner_public_key : str
        The owner's Ed25519 public key, base64 (or hex) of the raw 32 bytes.
    signature : str
        Base64 Ed25519 signature over :meth:`signing_payload`; empty if unsigned.
    rotation : str
        Base64 signature by the key the name was bound to, handing the name
        over to ``owner_public_key`` (:func:`fednet.hub.trust.sign_rotation`);
        empty when the key is unchanged.
    """

    name: str
    base_model: str
    rank: int
    task: str
    owner: str
    version: int = 0
    label_names: tuple[str, ...] = ()
    round: int = 0
    kind: str = "shared"
    metrics: dict[str, float] = field(default_factory=dict)
    epsilon: float | None = None
    update_epsilon: float | None = None
    sketch_epsilon: float | None = None
    delta: float | None = None
    accountant: str | None = None
    epsilon_note: str | None = None
    sketch: str | None = None
    contribution: float | None = None
    contribution_method: str | None = None
    created_at: str = field(default_factory=utc_now_iso)
    files: dict[str, str] = field(default_factory=dict)
    owner_public_key: str = ""
    signature: str = ""
    rotation: str = ""

    def __post_init__(self) -> None:
        check_name("name", self.name)
        check_name("owner", self.owner)
        _check_str("base_model", self.base_model)
        check_name("task", self.task)
        _check_str("kind", self.kind)
        check_int("rank", self.rank, minimum=1)
        check_int("version", self.version, minimum=0)
        check_int("round", self.round, minimum=0)
        if not isinstance(self.label_names, tuple | list):
            raise TypeError(f"`label_names` must be a sequence of str, got {self.label_names!r}")
        for i, label in enumerate(self.label_names):
            _check_str(f"label_names[{i}]", label)
        object.__setattr__(self, "label_names", tuple(self.label_names))
        if not isinstance(self.metrics, Mapping):
            raise TypeError(f"`metrics` must be a mapping of str to float, got {self.metrics!r}")
        metrics = {}
        for key, value in self.metrics.items():
            _check_str("metrics key", key)
            metrics[key] = _check_float(f"metrics[{key!r}]", value)
        object.__setattr__(self, "metrics", metrics)
        self._post_init_privacy()
        self._post_init_contribution()
        self._post_init_files()
        _check_str("created_at", self.created_at)
        try:
            created = datetime.fromisoformat(self.created_at)
        except ValueError as e:
            raise ValueError(f"`created_at` must be ISO 8601, got {self.created_at!r}") from e
        offset = created.utcoffset()
        if offset is None or offset.total_seconds() != 0:
            raise ValueError(f"`created_at` must be in UTC, got {self.created_at!r}")
        _check_str("owner_public_key", self.owner_public_key, empty=True)
        _check_str("signature", self.signature, empty=True)
        _check_str("rotation", self.rotation, empty=True)

    def _post_init_privacy(self) -> None:
        for name in ("epsilon", "update_epsilon", "sketch_epsilon"):
            value = getattr(self, name)
            if value is not None:
                eps = _check_float(name, value)
                if eps < 0:
                    raise ValueError(f"`{name}` must be >= 0, got {value!r}")
                object.__setattr__(self, name, eps)
        for name in ("accountant", "epsilon_note"):
            if getattr(self, name) is not None:
                _check_str(name, getattr(self, name))

        if self.delta is not None:
            delta = _check_float("delta", self.delta)
            if not 0.0 <= delta < 1.0:
                raise ValueError(f"`delta` must be in [0, 1), got {self.delta!r}")
            object.__setattr__(self, "delta", delta)

    def _post_init_contribution(self) -> None:
        if self.contribution is None:
            if self.contribution_method is not None:
                raise ValueError(
                    "`contribution` must be set when `contribution_method` is, "
                    f"got method {self.contribution_method!r} without a score"
                )
            return
        object.__setattr__(self, "contribution", _check_float("contribution", self.contribution))
        if self.contribution_method is None:
            raise ValueError("`contribution_method` must name how `contribution` was estimated")
        _check_str("contribution_method", self.contribution_method)

    def _post_init_files(self) -> None:
        if not isinstance(self.files, Mapping):
            raise TypeError(f"`files` must be a mapping of file name to sha256, got {self.files!r}")
        files = {}
        for filename, digest in self.files.items():
            check_filename("files key", filename)
            if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
                raise ValueError(
                    f"`files[{filename!r}]` must be 64 lowercase hex digits, got {digest!r}"
                )
            files[filename] = digest
        object.__setattr__(self, "files", dict(sorted(files.items())))
        if self.sketch is not None:
            check_filename("sketch", self.sketch)
            if self.files and self.sketch not in self.files:
                raise ValueError(f"`sketch` {self.sketch!r} is not one of `files` {list(files)}")

    @property
    def is_signed(self) -> bool:
        """Whether the manifest carries a key and a signature."""
        return bool(self.signature and self.owner_public_key)

    @property
    def ref(self) -> str:
        """A readable ``name@vN`` reference for messages."""
        return f"{self.name}@v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of every field."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["label_names"] = list(self.label_names)
        out["metrics"] = dict(self.metrics)
        out["files"] = dict(self.files)
        return out

    def to_json(self, *, indent: int | None = None) -> str:
        """Serialize to JSON (keys sorted)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, allow_nan=False)

    def signing_payload(self) -> bytes:
        """Canonical bytes the owner signs.

        JSON with sorted keys, no whitespace and UTF-8, leaving out the fields in
        :data:`SIGNATURE_EXCLUDED_FIELDS`.
        """
        data = {
            k: v
            for k, v in self.to_dict().items()
            if k not in SIGNATURE_EXCLUDED_FIELDS and not (k in SIGNED_WHEN_SET and v is None)
        }
        return json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")

    def with_version(self, version: int) -> Manifest:
        """Return a copy carrying the store-assigned ``version``."""
        return replace(self, version=version)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Build a manifest from a dict, rejecting unknown or missing keys.

        Raises
        ------
        TypeError
            If ``data`` is not a mapping or a field has the wrong type.
        ValueError
            If a key is unknown or missing, or a field's value is invalid.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"manifest must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"manifest has unknown keys {unknown}; valid keys are {sorted(known)}")
        required = ("name", "base_model", "rank", "task", "owner")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"manifest is missing required keys {missing}")
        kwargs = dict(data)
        if "label_names" in kwargs and isinstance(kwargs["label_names"], list):
            kwargs["label_names"] = tuple(kwargs["label_names"])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse a manifest from JSON; see :meth:`from_dict`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"manifest is not valid JSON: {e}") from e
        return cls.from_dict(data)
