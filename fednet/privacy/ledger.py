"""Per-client privacy ledger: every release composed by one accountant, kept across restarts.

Each client owns one :class:`PrivacyLedger`. DP-SGD training, sketch releases
and locally noised updates are all charged to it as
``(noise_multiplier, sample_rate, steps)``; the ledger refuses a charge that
would take the client past its ε budget and can be saved to and restored from
a JSON file, so the budget survives a restart of the client process.

A query costs the same at any length of history: for an RDP accountant the
ledger keeps the composed RDP curve (one value per order, per release kind)
and adds each release's curve once, when it is recorded; ε is one conversion
of that curve (Mironov, "Rényi Differential Privacy", 2017, prop. 3), the same
sum and conversion opacus's ``RDPAccountant.get_privacy_spent`` performs.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

from fednet.atomic import write_atomic
from fednet.errors import BudgetExhaustedError
from fednet.privacy._checks import check_delta, check_positive
from fednet.privacy.accountant import (
    History,
    accountant_epsilon,
    create_accountant,
    validate_release,
)

__all__ = ["RELEASE_KINDS", "Release", "PrivacyLedger", "reset_ledgers", "time_epsilon_query"]

logger = logging.getLogger(__name__)

RELEASE_KINDS: tuple[str, ...] = ("dpsgd", "sketch", "update", "prototype")
"""What a release can be: DP-SGD training, a capability sketch, a noised update,
DP class prototypes (:mod:`fednet.representation.prototypes`)."""

_STATE_VERSION = 1


@functools.lru_cache(maxsize=4096)
def _rdp_curve(
    noise_multiplier: float, sample_rate: float, orders: tuple[float, ...]
) -> np.ndarray:
    """RDP of one step of the sampled Gaussian mechanism at each order (read-only)."""
    curve = np.asarray(
        rdp_analysis.compute_rdp(
            q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(orders)
        ),
        dtype=np.float64,
    )
    curve.setflags(write=False)
    return curve


@dataclass(frozen=True)
class Release:
    """One release of a (sub)sampled Gaussian mechanism run ``steps`` times: an
    entry of a ledger, or one a client plans and charges before it trains.

    Parameters
    ----------
    noise_multiplier : float
        σ, the noise standard deviation over the L2 sensitivity.
    sample_rate : float
        q, the Poisson sampling rate in (0, 1].
    steps : int
        How many times the mechanism runs.
    kind : str
        One of :data:`RELEASE_KINDS`.

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`RELEASE_KINDS`.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    kind: str

    def __post_init__(self) -> None:
        _check_kind(self.kind)


def _check_kind(kind: object) -> str:
    if kind not in RELEASE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(RELEASE_KINDS)}; got {kind!r}")
    return str(kind)


class PrivacyLedger:
    """The privacy spent by one client, composed with an opacus accountant.

    Parameters
    ----------
    client_id : str
        Whose ledger this is; named in refusals and checked on restore.
    delta : float
        δ at which ε is reported, in (0, 1).
    budget : float
        Total ε the client may spend; ``math.inf`` means no budget.
    accountant : str
        Registered accountant name (see
        :func:`~fednet.privacy.accountant.create_accountant`).

    Notes
    -----
    A release with ``noise_multiplier == 0`` has infinite ε: :meth:`charge`
    refuses it under any finite budget, while :meth:`record` accepts it and
    the ledger then reports ``math.inf``.
    """

    def __init__(
        self, client_id: str, *, delta: float, budget: float = math.inf, accountant: str = "rdp"
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ValueError(f"client_id must be a non-empty string, got {client_id!r}")
        self.client_id = client_id
        self.delta = check_delta("delta", delta)
        self.budget = check_positive("budget", budget, allow_inf=True)
        self.accountant_name = accountant
        self._accountant = create_accountant(accountant)
        self._kinds: list[str] = []
        self._notes: list[str | None] = []
        self._epsilon: float | None = 0.0
        # composed RDP per kind (RDP accountants only); None: ask the accountant
        self._orders: tuple[float, ...] | None = (
            tuple(float(a) for a in type(self._accountant).DEFAULT_ALPHAS)
            if isinstance(self._accountant, RDPAccountant)
            else None
        )
        self._rdp: dict[str, np.ndarray] = {}
        self._unnoised: set[str] = set()

    # -- reading ---------------------------------------------------------------
    @property
    def history(self) -> History:
        """``(noise_multiplier, sample_rate, steps)`` triples, oldest first (a copy)."""
        return [(float(z), float(q), int(s)) for z, q, s in self._accountant.history]

    @property
    def releases(self) -> tuple[Release, ...]:
        """Every recorded release with its kind, oldest first."""
        return tuple(
            Release(float(z), float(q), int(s), kind)
            for (z, q, s), kind in zip(self._accountant.history, self._kinds, strict=True)
        )

    @property
    def epsilon(self) -> float:
        """ε spent so far at :attr:`delta` (``accountant.get_epsilon(delta)``)."""
        if self._epsilon is None:
            self._epsilon = self._compose(RELEASE_KINDS)
        return self._epsilon

    def epsilon_of(self, kinds: tuple[str, ...] | list[str]) -> float | None:
        """ε of the releases of the given kinds alone, composed; None when there is none."""
        for kind in kinds:
            _check_kind(kind)
        if not any(k in kinds for k in self._kinds):
            return None
        return self._compose(tuple(kinds))

    def has_note(self, note: str) -> bool:
        """Whether a release was recorded with ``note`` (e.g. one charge per run)."""
        return note in self._notes

    def _compose(
        self, kinds: tuple[str, ...], extra: tuple[float, float, int] | None = None
    ) -> float:
        if self._orders is None:  # an accountant without an RDP curve: compose from history
            acc = create_accountant(self.accountant_name)
            acc.history = [
                entry
                for entry, kind in zip(self.history, self._kinds, strict=True)
                if kind in kinds
            ] + ([extra] if extra else [])
            return accountant_epsilon(acc, delta=self.delta)
        if any(k in self._unnoised for k in kinds) or (extra is not None and extra[0] == 0):
            return math.inf
        curves = [self._rdp[k] for k in kinds if k in self._rdp]
        if extra is not None:
            z, q, s = extra
            curves.append(s * _rdp_curve(float(z), float(q), self._orders))
        if not curves:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # edge-of-grid warnings: the bound holds
            eps, _ = rdp_analysis.get_privacy_spent(
                orders=list(self._orders), rdp=np.sum(curves, axis=0), delta=self.delta
            )
        return float(eps)

    @property
    def remaining(self) -> float:
        """ε left before the budget is reached (never negative)."""
        return max(self.budget - self.epsilon, 0.0)

    def epsilon_after(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        """ε the ledger would report after one more release; the ledger is not changed."""
        validate_release(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        extra = (float(noise_multiplier), float(sample_rate), int(steps))
        return self._compose(RELEASE_KINDS, extra)

    def would_exceed(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> bool:
        """Whether one more release would take ε past the budget."""
        after = self.epsilon_after(
            noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps
        )
        return after > self.budget

    # -- writing ---------------------------------------------------------------
    def record(
        self,
        *,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        kind: str,
        note: str | None = None,
    ) -> float:
        """Compose a release into the ledger without checking the budget.

        Returns
        -------
        float
            ε spent after the release.
        """
        validate_release(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        self._append(noise_multiplier, sample_rate, steps, _check_kind(kind), note)
        return self.epsilon

    def _append(
        self, noise_multiplier: float, sample_rate: float, steps: int, kind: str, note: str | None
    ) -> None:
        z, q, s = float(noise_multiplier), float(sample_rate), int(steps)
        self._accountant.history.append((z, q, s))
        self._kinds.append(kind)
        self._notes.append(note)
        if self._orders is not None:
            if z == 0:
                self._unnoised.add(kind)
            else:
                curve = s * _rdp_curve(z, q, self._orders)
                self._rdp[kind] = self._rdp[kind] + curve if kind in self._rdp else curve
        self._epsilon = None

    def charge(
        self,
        *,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        kind: str,
        note: str | None = None,
    ) -> float:
        """Record a release if it keeps the client within budget.

        Returns
        -------
        float
            ε spent after the release.

        Raises
        ------
        BudgetExhaustedError
            If the release would take ε past the budget; the ledger is unchanged.
        """
        kind = _check_kind(kind)
        spent = self.epsilon
        after = self.epsilon_after(
            noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps
        )
        if after > self.budget:
            raise BudgetExhaustedError(
                f"client {self.client_id!r}: {kind} release (noise_multiplier={noise_multiplier}, "
                f"sample_rate={sample_rate}, steps={steps}) would raise epsilon from "
                f"{spent:.4g} to {after:.4g}, over the budget of {self.budget:.4g} "
                f"(delta={self.delta:g})",
                client_id=self.client_id,
                spent=spent,
                requested=after,
                budget=self.budget,
            )
        self._append(noise_multiplier, sample_rate, steps, kind, note)
        self._epsilon = after
        logger.info(
            "client %s charged %s release: epsilon %.4g -> %.4g of %.4g",
            self.client_id,
            kind,
            spent,
            after,
            self.budget,
        )
        return after

    # -- persistence -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state; an infinite budget is stored as ``None``."""
        return {
            "version": _STATE_VERSION,
            "client_id": self.client_id,
            "delta": self.delta,
            "budget": None if math.isinf(self.budget) else self.budget,
            "accountant": self.accountant_name,
            "history": [[z, q, s] for z, q, s in self.history],
            "kinds": list(self._kinds),
            "notes": list(self._notes),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the history with ``state``'s.

        The ledger keeps its own ``delta`` and ``budget`` (the live configuration
        wins); ``client_id`` and ``accountant`` must match.

        Raises
        ------
        ValueError
            If the state is malformed or belongs to another client or accountant.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"state version must be {_STATE_VERSION}, got {state.get('version')!r}"
            )
        for key, mine in (("client_id", self.client_id), ("accountant", self.accountant_name)):
            if state.get(key) != mine:
                raise ValueError(f"state {key} must be {mine!r}, got {state.get(key)!r}")
        history, kinds = state.get("history"), state.get("kinds")
        if not isinstance(history, list) or not isinstance(kinds, list):
            raise ValueError("state history and kinds must be lists")
        if len(history) != len(kinds):
            raise ValueError(f"state history has {len(history)} entries but kinds has {len(kinds)}")
        entries: History = []
        for i, entry in enumerate(history):
            if not isinstance(entry, list | tuple) or len(entry) != 3:
                raise ValueError(f"state history[{i}] must be a triple, got {entry!r}")
            z, q, s = entry
            validate_release(noise_multiplier=z, sample_rate=q, steps=s)
            entries.append((float(z), float(q), int(s)))
        checked = [_check_kind(kind) for kind in kinds]
        notes = state.get("notes", [None] * len(kinds))
        if not isinstance(notes, list) or len(notes) != len(kinds):
            raise ValueError("state notes must be a list as long as kinds")
        if not all(n is None or isinstance(n, str) for n in notes):
            raise ValueError("state notes must be strings or null")
        self._accountant.history = []
        self._kinds, self._notes, self._rdp, self._unnoised = [], [], {}, set()
        for (z, q, s), kind, note in zip(entries, checked, notes, strict=True):
            self._append(z, q, s, kind, note)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state as JSON atomically (temporary file, then ``os.replace``)."""
        text = json.dumps(self.state_dict(), indent=2, allow_nan=False)
        write_atomic(path, text.encode("utf-8"))
        logger.debug("saved ledger of client %s to %s", self.client_id, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PrivacyLedger:
        """Restore a ledger written by :meth:`save`, with its stored delta and budget."""
        state = _read_state(path)
        budget = state.get("budget")
        ledger = cls(
            state.get("client_id"),  # type: ignore[arg-type]
            delta=state.get("delta"),  # type: ignore[arg-type]
            budget=math.inf if budget is None else budget,
            accountant=state.get("accountant", "rdp"),
        )
        ledger.load_state_dict(state)
        return ledger

    @classmethod
    def load_or_create(
        cls,
        path: str | os.PathLike[str],
        client_id: str,
        *,
        delta: float,
        budget: float = math.inf,
        accountant: str = "rdp",
    ) -> PrivacyLedger:
        """Ledger with the given settings, carrying the history saved at ``path`` if any."""
        ledger = cls(client_id, delta=delta, budget=budget, accountant=accountant)
        if Path(path).exists():
            ledger.load_state_dict(_read_state(path))
            logger.info(
                "restored ledger of client %s from %s: epsilon %.4g",
                client_id,
                path,
                ledger.epsilon,
            )
        return ledger

    def __repr__(self) -> str:
        return (
            f"PrivacyLedger(client_id={self.client_id!r}, epsilon={self.epsilon:.4g}, "
            f"budget={self.budget:.4g}, delta={self.delta:g}, releases={len(self._kinds)})"
        )


def _read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"ledger file {os.fspath(path)!r} is not valid JSON: {e}") from e
    if not isinstance(state, dict):
        raise ValueError(f"ledger file {os.fspath(path)!r} must hold a JSON object")
    return state


_LEDGER_NAME = re.compile(r"^ledger-[0-9a-f]{16}\.json$")
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def reset_ledgers(
    state_dir: str | os.PathLike[str], client_id: str, *, fingerprint: str | None = None
) -> list[dict[str, Any]]:
    """Retire a client's ledgers so that its next run starts at ε = 0.

    This is the only way a budget resets. Nothing is deleted: each ledger
    ``<state-dir>/<client-id>/ledger-<fingerprint>.json`` is renamed to
    ``....json.reset-<unix time>``, and a JSON line recording what was retired
    (file, ε, δ, number of releases, time, user) is appended to
    ``<state-dir>/<client-id>/ledger-resets.log``; a warning is logged too.

    Parameters
    ----------
    state_dir : path
        The state directory root (``federation.state-dir`` or a node's ``state-dir``).
    client_id : str
        Whose ledgers.
    fingerprint : str, optional
        Only the ledger of this data fingerprint (16 hex digits); all by default.

    Returns
    -------
    list of dict
        One record per retired ledger.

    Raises
    ------
    ValueError
        If ``client_id`` or ``fingerprint`` is not a plain name, or there is no
        ledger to reset.
    """
    import getpass
    import time

    if not isinstance(client_id, str) or not _CLIENT_NAME.fullmatch(client_id):
        raise ValueError(f"client id must be a plain name, got {client_id!r}")
    if fingerprint is not None and not re.fullmatch(r"[0-9a-f]{16}", fingerprint):
        raise ValueError(f"fingerprint must be 16 lowercase hex digits, got {fingerprint!r}")
    folder = Path(state_dir) / client_id
    paths = sorted(p for p in folder.glob("ledger-*.json") if _LEDGER_NAME.fullmatch(p.name))
    if fingerprint is not None:
        paths = [p for p in paths if p.name == f"ledger-{fingerprint}.json"]
    if not paths:
        what = f"ledger-{fingerprint}.json" if fingerprint else "ledger"
        raise ValueError(f"no {what} of client {client_id!r} in {os.fspath(folder)!r}")
    records = []
    stamp = int(time.time())
    for path in paths:
        ledger = PrivacyLedger.load(path)
        target = path.with_name(f"{path.name}.reset-{stamp}")
        os.replace(path, target)
        record = {
            "time": stamp,
            "user": getpass.getuser(),
            "client_id": client_id,
            "ledger": path.name,
            "kept_as": target.name,
            "epsilon": ledger.epsilon,
            "delta": ledger.delta,
            "releases": len(ledger.releases),
        }
        with (folder / "ledger-resets.log").open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        logger.warning(
            "privacy ledger of client %s reset: %s (epsilon %.4g at delta %g, %d releases) "
            "retired as %s",
            client_id,
            path.name,
            ledger.epsilon,
            ledger.delta,
            record["releases"],
            target.name,
        )
        records.append(record)
    return records


def time_epsilon_query(releases: int = 1000, *, repeats: int = 20) -> dict[str, float]:
    """Seconds per ε query, and per ``epsilon_after``, of a ledger of ``releases`` entries.

    The entries mix DP-SGD, update and sketch releases of distinct
    parameters; used by ``fednet privacy bench-ledger``.
    """
    import time

    ledger = PrivacyLedger("bench", delta=1e-5)
    for i in range(releases):
        kind = RELEASE_KINDS[i % len(RELEASE_KINDS)]
        ledger.record(
            noise_multiplier=1.0 + (i % 50) / 100,
            sample_rate=0.01 + (i % 7) / 100,
            steps=10,
            kind=kind,
        )
    t0 = time.perf_counter()
    for _ in range(repeats):
        ledger._epsilon = None  # a cold query: compose and convert
        _ = ledger.epsilon
    query = (time.perf_counter() - t0) / repeats
    t0 = time.perf_counter()
    for _ in range(repeats):
        ledger.epsilon_after(noise_multiplier=1.3, sample_rate=0.05, steps=5)
    after = (time.perf_counter() - t0) / repeats
    return {"releases": float(releases), "epsilon_s": query, "epsilon_after_s": after}
