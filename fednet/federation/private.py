"""Privacy around a client's training round: budget, DP-SGD, update DP, sketches.

:class:`PrivateRound` wraps a :class:`~fednet.federation.client.ClientRuntime`.
Before the client touches its data it plans every release of the round and
asks its ledger whether the whole plan fits the budget; if not, it refuses and
releases nothing. Then it trains (with Opacus DP-SGD when configured), clips
and noises its update (local mode), builds the DP capability sketch when the
server asks for one, charges the ledger and saves it to the client's state
directory, so the ledger survives a restart.

Releases and how each is charged (noise multiplier z, sample rate q, steps):

- DP-SGD: ``(z_sgd, batch_size / n, local_steps)``;
- update, local mode: ``(z_u, 1, 1)``: the server sees who took part;
- update, central mode: ``(z_u, fraction_train, rounds)``, once per run, when
  the server first asks for the client's profile (:meth:`PrivateRound.join_central_run`).
  The trusted server samples clients by secret Poisson sampling with
  probability ``q = fraction_train`` every round and noises the sum with a
  fixed denominator (DP-FedAvg, :mod:`fednet.strategies.dp_central`), so every
  client is charged every round, sampled or not, with amplification ``q``.
  A client whose budget cannot take the whole run sends no profile and never
  takes part;
- sketch: ``(z_s, 1, 1)``, ``z_s`` calibrated to ``privacy.sketch-epsilon``.

In central mode without DP-SGD a personalised adapter is covered by no
mechanism (the server does not aggregate it), so it stays on the client, in
its state directory, and nothing is charged for it.

Every noise sample and sampling decision comes from OS entropy
(:mod:`fednet.privacy.randomness`), unless ``privacy.reproducible-noise`` is on
(tests only). Under privacy, only :data:`DP_METRIC_KEYS` of a client's metrics
leave it (:func:`releasable_metrics`); the rest (training loss, update norm,
evaluation accuracy and loss, example counts, timings) are written to the
client's own state directory instead.

The ledger lives in ``<state-dir>/<client-id>/ledger-<fingerprint>.json``: it is
keyed by the client and a fingerprint of its training data
(:func:`data_fingerprint`), so a new run, or a new run directory, on the same
data continues the same budget. Only ``fednet privacy reset-ledger`` removes it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fednet.config import ClientConfig
from fednet.federation.client import ClientRuntime
from fednet.privacy.config import PrivacyConfig

if TYPE_CHECKING:
    from fednet.privacy.ledger import PrivacyLedger, Release
from fednet.protocol import DP_METRIC_KEYS

__all__ = [
    "DP_METRIC_KEYS",
    "PrivateRound",
    "RoundResult",
    "check_one_owner",
    "EPSILON_KINDS",
    "data_fingerprint",
    "keeps_personalized",
    "ledger_epsilons",
    "ledger_path",
    "releasable_metrics",
    "record_own_metrics",
]


def releasable_metrics(privacy: PrivacyConfig, metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics that may leave the client: all without privacy, else :data:`DP_METRIC_KEYS`."""
    if not privacy.enabled:
        return dict(metrics)
    return {k: float(v) for k, v in metrics.items() if k in DP_METRIC_KEYS}


def data_fingerprint(client: ClientConfig) -> str:
    """16 hex digits of SHA-256 over where the client's data comes from.

    A local file counts by its bytes (and the columns read from it); a catalogue
    data set by its name and the client's share of it (partitioner, number of
    partitions, partition, Dirichlet alpha). The preset's ``seed`` and
    ``test-fraction`` are left out on purpose: they only choose which of the
    same rows train, and a new seed must not buy a new budget.
    """
    from fednet.config import is_data_file

    h = hashlib.sha256()
    if is_data_file(client.dataset):
        with Path(client.dataset).expanduser().open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(json.dumps(["file", client.text_column, client.label_column]).encode())
    else:
        h.update(json.dumps(["catalogue", client.dataset]).encode())
    share: list[str | int | float] = [client.partitioner, client.num_partitions, client.partition]
    if client.partitioner == "dirichlet":
        share.append(client.dirichlet_alpha)
    h.update(json.dumps(share).encode())
    return h.hexdigest()[:16]


def check_one_owner(state_dir: Path, client_id: str, fingerprint: str) -> None:
    """Refuse a second client id for data whose ledger another client id already holds.

    Renaming a client must not start a new budget on the same data.

    Raises
    ------
    BudgetExhaustedError
        Naming the other client and the ledger file.
    """
    from fednet.errors import BudgetExhaustedError

    for other in sorted(Path(state_dir).glob(f"*/ledger-{fingerprint}.json")):
        if other.parent.name != client_id:
            raise BudgetExhaustedError(
                f"client {client_id}: its data (fingerprint {fingerprint}) already has a "
                f"privacy ledger under client {other.parent.name!r} ({other}); one data set "
                "has one budget. Use that client id, or reset that ledger with "
                "`fednet privacy reset-ledger` if the data is not what it was",
                client_id=client_id,
            )


def ledger_path(state_dir: Path, client_id: str, fingerprint: str) -> Path:
    """Where the ledger of ``client_id`` on data ``fingerprint`` lives."""
    return Path(state_dir) / client_id / f"ledger-{fingerprint}.json"


EPSILON_KINDS: dict[str, tuple[str, ...] | None] = {
    "epsilon": None,  # every release
    "update-epsilon": ("dpsgd", "update"),
    "sketch-epsilon": ("sketch",),
}
"""Each ε a client reports (:data:`fednet.protocol.EPSILON_KEYS`) and the ledger
release kinds it composes; None: every release."""


def ledger_epsilons(ledger: PrivacyLedger) -> dict[str, float]:
    """The ε of ``ledger`` per :data:`EPSILON_KINDS` key, for each key it has releases of.

    What a client reports after a round, and what the manifests it signs may claim.
    """
    out: dict[str, float] = {}
    for key, kinds in EPSILON_KINDS.items():
        if kinds is None:
            eps = ledger.epsilon if ledger.releases else None
        else:
            eps = ledger.epsilon_of(kinds)
        if eps is not None:
            out[key] = float(eps)
    return out


def keeps_personalized(cfg: PrivacyConfig) -> bool:
    """Whether a client keeps its personalised adapter to itself: central mode, no DP-SGD.

    Its update then leaves it unnoised for the trusted server's noised sum, so a
    personalised adapter trained on top would carry no noise of its own.
    """
    return cfg.enabled and cfg.update_mode == "central" and not cfg.dpsgd


def _append_record(path: Path, entry: Mapping[str, Any]) -> None:
    """Append ``entry``, stamped with the time, as one JSON line of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"time": time.time(), **entry}, default=float) + "\n")


def record_own_metrics(state_dir: Path, client_id: str, entry: Mapping[str, Any]) -> None:
    """Append ``entry`` to ``<state-dir>/<client-id>/metrics.jsonl``: the client's own record
    of what it kept to itself."""
    _append_record(Path(state_dir) / client_id / "metrics.jsonl", entry)


def record_released(
    state_dir: Path, client_id: str, run_id: int, kind: str, metrics: Mapping[str, Any]
) -> None:
    """Append what the client sends the server (``kind``: ``"profile"``, ``"train"``
    or ``"evaluate"``) to ``<state-dir>/<client-id>/released.jsonl``, the record it
    holds the server's drafts to before it signs (:func:`released_metrics`)."""
    _append_record(
        Path(state_dir) / client_id / "released.jsonl",
        {"run": int(run_id), "kind": kind, "metrics": dict(metrics)},
    )


def released_metrics(state_dir: Path, client_id: str, run_id: int) -> dict[str, dict[str, float]]:
    """The client's last ``profile``, ``evaluate`` and ``personalized`` (a training round
    with ``personalized`` set) metrics sent in run ``run_id``; empty when none."""
    path = Path(state_dir) / client_id / "released.jsonl"
    out: dict[str, dict[str, float]] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line of a crashed write: that release is unknown
        if not isinstance(entry, dict) or entry.get("run") != int(run_id):
            continue
        kind, metrics = entry.get("kind"), entry.get("metrics")
        if not isinstance(metrics, dict):
            continue
        if kind == "train" and metrics.get("personalized") == 1.0:
            kind = "personalized"
        if kind in ("profile", "evaluate", "personalized"):
            out[str(kind)] = metrics
    return out


logger = logging.getLogger(__name__)


@dataclass
class RoundResult:
    """What a private round lets leave the client."""

    lora: dict[str, torch.Tensor] | None
    """None when the weights stay on the client (see the module notes)."""
    head: dict[str, torch.Tensor] | None
    sketch: dict[str, torch.Tensor] | None
    metrics: dict[str, float]


@functools.lru_cache(maxsize=64)
def _dpsgd_noise(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    from fednet.privacy import calibrate_noise_multiplier

    return calibrate_noise_multiplier(
        epsilon=epsilon, delta=delta, sample_rate=sample_rate, steps=steps
    )


@functools.lru_cache(maxsize=16)
def _sketch_noise(epsilon: float, delta: float) -> float:
    from fednet.privacy import sketch_noise_multiplier

    return sketch_noise_multiplier(epsilon=epsilon, delta=delta)


class PrivateRound:
    """Runs one client's training round under its privacy configuration.

    Parameters
    ----------
    runtime : ClientRuntime
        The client's data and model.
    state_dir : Path
        The client's state directory root (its ledger is in ``<client-id>/``).
    """

    def __init__(self, runtime: ClientRuntime, *, state_dir: Path) -> None:
        self.rt = runtime
        self.cfg: PrivacyConfig = runtime.cfg.privacy
        self.state_dir = Path(state_dir)
        self.fingerprint = data_fingerprint(runtime.client)
        self.ledger_path = ledger_path(self.state_dir, runtime.client.id, self.fingerprint)

    def noise(self, purpose: str, server_round: int):
        """The noise source of one mechanism: OS entropy unless reproducible noise is on."""
        from fednet.privacy.randomness import noise_source

        return noise_source(
            reproducible=self.cfg.reproducible_noise,
            parts=(self.rt.cfg.seed, self.rt.client.id, purpose, server_round),
        )

    # -- planning ---------------------------------------------------------------
    @property
    def dpsgd_sample_rate(self) -> float:
        """``privacy.dpsgd-sample-rate``: public, so that ε does not reveal ``n``."""
        q = self.cfg.dpsgd_sample_rate
        if q is None:
            raise ValueError("`privacy.dpsgd-sample-rate` must be set with `privacy.dpsgd` on")
        return float(q)

    def dpsgd_noise_multiplier(self) -> float:
        """z of DP-SGD: given, or calibrated to ``dpsgd-epsilon`` over the whole run."""
        if self.cfg.dpsgd_noise_multiplier is not None:
            return float(self.cfg.dpsgd_noise_multiplier)
        fed = self.rt.cfg
        total = fed.rounds * self.rt.client.local_steps + fed.personalize_steps
        assert self.cfg.dpsgd_epsilon is not None
        return _dpsgd_noise(self.cfg.dpsgd_epsilon, self.cfg.delta, self.dpsgd_sample_rate, total)

    def plan(self, *, steps: int, release_sketch: bool) -> list[Release]:
        """Every release this round would make."""
        from fednet.privacy.ledger import Release

        out = []
        if self.cfg.enabled and self.cfg.dpsgd:
            out.append(
                Release(
                    kind="dpsgd",
                    noise_multiplier=self.dpsgd_noise_multiplier(),
                    sample_rate=self.dpsgd_sample_rate,
                    steps=steps,
                )
            )
        if self.cfg.enabled and self.cfg.update_mode == "local":
            out.append(
                Release(
                    kind="update",
                    noise_multiplier=self.cfg.update_noise_multiplier,
                    sample_rate=1.0,
                    steps=1,
                )
            )
        if release_sketch:
            out.append(
                Release(
                    kind="sketch",
                    noise_multiplier=_sketch_noise(self.cfg.sketch_epsilon, self.cfg.delta),
                    sample_rate=1.0,
                    steps=1,
                )
            )
        return out

    def central_release(self) -> Release:
        """The central mechanism over the whole run: ``(z_u, fraction_train, rounds)``."""
        from fednet.privacy.ledger import Release

        return Release(
            kind="update",
            noise_multiplier=self.cfg.update_noise_multiplier,
            sample_rate=self.rt.cfg.strategy.fraction_train,
            steps=self.rt.cfg.rounds,
        )

    def join_central_run(self, run_id: int) -> float:
        """Charge the central mechanism of run ``run_id`` once; return ε after it.

        Raises ``BudgetExhaustedError`` (the ledger unchanged) when the whole
        run does not fit the budget: the client then stays out of the run.
        """
        from fednet.strategies.dp_central import ACCOUNTING_RULE

        with self.locked_ledger():
            ledger = self.ledger()
            note = f"central-run:{run_id} rule:{ACCOUNTING_RULE}"
            if not ledger.has_note(note):
                r = self.central_release()
                ledger.charge(
                    noise_multiplier=r.noise_multiplier,
                    sample_rate=r.sample_rate,
                    steps=r.steps,
                    kind=r.kind,
                    note=note,
                )
                ledger.save(self.ledger_path)
        return ledger.epsilon

    def locked_ledger(self) -> Any:
        """An exclusive lock on this client's ledger (``<ledger>.lock`` beside it), so
        that two processes of one client (two runs at once) check and charge it in
        turn; a context manager. The charge is saved before anything is released."""
        from filelock import FileLock

        self.ledger_path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.ledger_path) + ".lock")

    def check_central_round(self, server_round: int, *, personalize: bool) -> None:
        """In central mode, refuse a training round beyond the rounds charged at join.

        The client charged ``(z, q, rounds)`` of its own preset; a server that
        runs longer would spend ε the ledger never saw.
        """
        from fednet.errors import BudgetExhaustedError

        rounds = self.rt.cfg.rounds
        if (
            self.cfg.enabled
            and self.cfg.update_mode == "central"
            and not personalize
            and server_round > rounds
        ):
            raise BudgetExhaustedError(
                f"client {self.rt.client.id}: central-DP round {server_round} is beyond the "
                f"{rounds} rounds charged to its ledger when it joined the run",
                client_id=self.rt.client.id,
            )

    def ledger(self):
        from fednet.privacy import PrivacyLedger

        check_one_owner(self.state_dir, self.rt.client.id, self.fingerprint)
        return PrivacyLedger.load_or_create(
            self.ledger_path,
            self.rt.client.id,
            delta=self.cfg.delta,
            budget=self.cfg.epsilon_budget,
            accountant=self.cfg.accountant,
        )

    def check_budget(self, plan: list[Release]):
        """The ledger, if the whole plan fits; else :class:`BudgetExhaustedError`."""
        from fednet.errors import BudgetExhaustedError
        from fednet.privacy import PrivacyLedger

        ledger = self.ledger()
        trial = PrivacyLedger(
            ledger.client_id, delta=ledger.delta, accountant=ledger.accountant_name
        )
        trial.load_state_dict(ledger.state_dict())
        for r in plan:
            trial.record(
                noise_multiplier=r.noise_multiplier,
                sample_rate=r.sample_rate,
                steps=r.steps,
                kind=r.kind,
            )
        if plan and trial.epsilon > self.cfg.epsilon_budget:
            raise BudgetExhaustedError(
                f"client {self.rt.client.id}: this round's releases "
                f"({', '.join(r.kind for r in plan)}) would take epsilon from "
                f"{ledger.epsilon:.4g} to {trial.epsilon:.4g}, over the budget "
                f"{self.cfg.epsilon_budget:g} (delta={self.cfg.delta:g})",
                client_id=self.rt.client.id,
                spent=ledger.epsilon,
                requested=trial.epsilon,
                budget=self.cfg.epsilon_budget,
            )
        return ledger

    # -- the round ----------------------------------------------------------------
    def run(
        self,
        *,
        run_id: int,
        server_round: int,
        steps: int,
        release_sketch: bool,
        personalize: bool = False,
    ) -> RoundResult:
        """Train one round of run ``run_id`` privately; raise ``BudgetExhaustedError``
        before any work if the round does not fit the budget.

        In central mode a training round of a run the client has not joined
        joins it first (:meth:`join_central_run`, charged once per run), so a
        server that skips the profile query still gets nothing uncharged. With
        ``personalize`` in central mode without DP-SGD the adapter is saved in
        the client's state directory and not released."""
        self.check_central_round(server_round, personalize=personalize)
        if self.cfg.enabled and self.cfg.update_mode == "central" and not personalize:
            self.join_central_run(run_id)
        plan = self.plan(steps=steps, release_sketch=release_sketch)
        with self.locked_ledger():  # charged before the round trains: a failure over-charges
            ledger = self.check_budget(plan)
            for r in plan:
                ledger.charge(
                    noise_multiplier=r.noise_multiplier,
                    sample_rate=r.sample_rate,
                    steps=r.steps,
                    kind=r.kind,
                )
            ledger.save(self.ledger_path)
        received_lora = self.rt.model.lora_state()
        received_head = self.rt.model.head_state()
        if self.cfg.enabled and self.cfg.dpsgd:
            metrics = self._train_dpsgd(
                server_round=server_round, steps=steps, noise_multiplier=plan[0].noise_multiplier
            )
        else:
            metrics = self.rt.train(server_round=server_round, steps=steps)
        lora: dict[str, torch.Tensor] | None = self.rt.model.lora_state()
        head: dict[str, torch.Tensor] | None = self.rt.model.head_state()
        if self.cfg.enabled and self.cfg.update_mode == "local":
            lora, head, norm = self._privatize(
                received_lora, received_head, lora, head, server_round
            )
            metrics["update-norm"] = norm
        elif personalize and self.keeps_personalized():
            self._keep_personalized()
            lora = head = None
        sketch = (
            self.build_sketch(plan[-1].noise_multiplier, server_round) if release_sketch else None
        )
        metrics.update(ledger_epsilons(ledger))
        metrics["delta"] = float(self.cfg.delta)
        logger.info(
            "client %s round %s: epsilon %.4g of budget %g",
            self.rt.client.id,
            server_round,
            ledger.epsilon,
            self.cfg.epsilon_budget,
        )
        return RoundResult(lora=lora, head=head, sketch=sketch, metrics=metrics)

    def keeps_personalized(self) -> bool:
        """Whether a personalised adapter stays here (:func:`keeps_personalized`)."""
        return keeps_personalized(self.cfg)

    def _keep_personalized(self) -> Path:
        from fednet.models import lora_targets, save_adapter

        rt = self.rt
        out = self.state_dir / rt.client.id / "personalized"
        save_adapter(
            out,
            lora_state=rt.model.lora_state(),
            base_model=rt.client.base_model,
            rank=rt.client.lora_rank,
            lora_alpha=rt.lora_alpha,
            lora_dropout=rt.cfg.lora.dropout,
            target_modules=lora_targets(rt.client.base_model, rt.cfg.lora.target_modules),
            head_state=rt.model.head_state(),
            label_names=rt.data.label_names,
            task=rt.client.task,
        )
        logger.info("client %s keeps its personalised adapter in %s", rt.client.id, out)
        return out

    def _privatize(self, lora0, head0, lora1, head1, server_round: int):
        from fednet.privacy import privatize_update, tree_norm

        delta = {
            **{f"lora:{k}": lora1[k] - lora0[k] for k in lora1},
            **{f"head:{k}": head1[k] - head0[k] for k in head1},
        }
        norm = float(tree_norm(delta))
        noisy = privatize_update(
            delta,
            clip=self.cfg.update_clip,
            noise_multiplier=self.cfg.update_noise_multiplier,
            noise=self.noise("update", server_round),
        )
        lora = {k: lora0[k] + noisy[f"lora:{k}"] for k in lora0}
        head = {k: head0[k] + noisy[f"head:{k}"] for k in head0}
        return lora, head, norm

    def _train_dpsgd(
        self, *, server_round: int, steps: int, noise_multiplier: float
    ) -> dict[str, float]:
        import time

        from torch.utils.data import DataLoader, TensorDataset

        from fednet.privacy import make_private
        from fednet.privacy.dpsgd import step_empty_batch

        rt = self.rt
        enc = rt.tokenizer(
            list(rt.data.train_texts),
            padding="max_length",
            truncation=True,
            max_length=rt.cfg.max_length,
            return_tensors="pt",
        )
        data = TensorDataset(
            enc["input_ids"],
            enc["attention_mask"],
            torch.tensor(rt.data.train_labels, dtype=torch.long),
        )
        # make_private replaces the batches by Poisson sampling from the noise source
        loader = DataLoader(data, batch_size=rt.client.batch_size)
        rt.model.train()  # opacus validates a module in training mode
        opt = torch.optim.AdamW(rt.model.trainable_parameters(), lr=rt.client.learning_rate)
        private = make_private(
            rt.model,
            opt,
            loader,
            max_grad_norm=self.cfg.dpsgd_max_grad_norm,
            noise_multiplier=noise_multiplier,
            noise=self.noise("dpsgd", server_round),
            sample_rate=self.dpsgd_sample_rate,
            expected_batch_size=rt.client.batch_size,
        )
        loss_fn = torch.nn.CrossEntropyLoss()
        module, dp_opt = private.module, private.optimizer
        t0, total, done = time.process_time(), 0.0, 0
        module.train()
        try:
            while done < steps:
                for ids, mask, y in private.data_loader:
                    if done >= steps:
                        break
                    dp_opt.zero_grad(set_to_none=True)
                    if len(y) == 0:  # an empty Poisson batch: a noise-only step, counted
                        step_empty_batch(dp_opt)
                        done += 1
                        continue
                    loss = loss_fn(module(ids, mask), y)
                    loss.backward()
                    dp_opt.step()
                    total += float(loss.detach())
                    done += 1
        finally:
            module._close()  # remove opacus hooks; rt.model is left as it was
            rt.model.eval()
        return {
            "train-loss": total / max(1, done),
            "steps": float(done),
            "compute-s": time.process_time() - t0,
            "num-examples": float(rt.num_examples),
        }

    def build_sketch(self, noise_multiplier: float, server_round: int) -> dict[str, torch.Tensor]:
        """The DP capability sketch: noisy per-label centroids in the frozen base's space.

        Embeddings come from the frozen base encoder (LoRA disabled), mean-pooled
        and L2-normalised, so every client of one base model shares the space and
        a router can embed a query once for all of them.

        A client with more than ``sketch-examples`` examples sketches a secret
        Poisson subsample: each example is in it independently with probability
        ``q = sketch-examples / n``. Under add/remove adjacency a Poisson
        subsample of neighbouring data sets differs by at most the one example,
        so the sensitivity analysis of :mod:`fednet.privacy.sketch` holds and the
        charge ``(z, 1, 1)`` is an upper bound. (A subset of fixed size would not
        do: adding one example can swap one member for another, which doubles the
        sensitivity of the sums.)
        """
        from fednet.privacy import build_sketch
        from fednet.training import embed_texts

        rt = self.rt
        n = len(rt.data.train_texts)
        noise = self.noise("sketch", server_round)
        q = min(1.0, self.cfg.sketch_examples / max(1, n))
        idx = range(n) if q >= 1.0 else np.flatnonzero(noise.bernoulli(n, q)).tolist()
        texts = [rt.data.train_texts[i] for i in idx]
        with rt.model.encoder.disable_adapter():  # type: ignore[operator]
            emb = embed_texts(
                rt.model.encode,
                texts or [""],  # an empty subsample still releases noise; "" only gives the width
                rt.tokenizer,
                max_length=rt.cfg.max_length,
            )[: len(texts)]
        labels = torch.tensor([rt.data.train_labels[i] for i in idx], dtype=torch.long)
        sketch = build_sketch(
            emb,
            labels,
            num_labels=len(rt.data.label_names),
            clip=self.cfg.sketch_clip,
            noise_multiplier=noise_multiplier,
            noise=noise,
            delta=self.cfg.delta,
            label_names=rt.data.label_names,
        )
        return sketch.to_tensors()
