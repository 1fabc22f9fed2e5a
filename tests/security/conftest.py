"""Fixtures of the red-team suite: a real hub on loopback with scoped tokens.

The hub fixtures (a tiny PEFT adapter, keys, drafts) come from the hub suite;
the published fake run comes from the inference suite. Release signing has a
client ledger charged with real releases, and copies of the run whose summary
claims what an honest (or a lying) server would.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fednet.config import ClientConfig
from fednet.hub import HubStore, create_app

if TYPE_CHECKING:
    from fednet.privacy.ledger import PrivacyLedger

from ..hub.conftest import adapter_dir, key, make_draft, other_key  # noqa: F401
from ..inference.conftest import run_dir  # noqa: F401
from ..loopback import serving

SPAM0 = ClientConfig(
    id="spam-0", dataset="sms-spam", base_model="tiny-bert", lora_rank=2
)  # as in the fake run


def charge_spam0(state_dir: Path) -> PrivacyLedger:
    """Charge spam-0's ledger as two DP-SGD rounds and a sketch would, and save it
    where the client keeps it; return the ledger as the rounds left it (epsilon
    about 8.9 at delta 1e-5, rdp)."""
    from fednet.federation.private import data_fingerprint, ledger_path
    from fednet.privacy import sketch_noise_multiplier
    from fednet.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger("spam-0", delta=1e-5, budget=20.0)
    for _ in range(2):
        ledger.charge(noise_multiplier=0.7, sample_rate=0.1, steps=10, kind="dpsgd")
    z = sketch_noise_multiplier(epsilon=1.0, delta=1e-5)
    ledger.charge(noise_multiplier=z, sample_rate=1.0, steps=1, kind="sketch")
    path = ledger_path(state_dir, "spam-0", data_fingerprint(SPAM0))
    path.parent.mkdir(parents=True, exist_ok=True)
    ledger.save(path)
    return ledger


def claims_of(ledger: PrivacyLedger) -> dict[str, object]:
    """What an honest server's summary says of the client: its last reported ε."""
    return {
        "epsilon": ledger.epsilon,
        "update_epsilon": ledger.epsilon_of(("dpsgd", "update")),
        "sketch_epsilon": ledger.epsilon_of(("sketch",)),
        "delta": ledger.delta,
        "accountant": ledger.accountant_name,
    }


def sent_by(run: Path, client_id: str) -> dict[str, dict[str, float]]:
    """What the client sent the server in the fake run, as its own record holds it
    (:func:`fednet.federation.private.released_metrics`): its last evaluation, its
    personalisation round and its profile's count."""
    info = json.loads((run / "summary.json").read_text())["clients"][client_id]
    return {
        "evaluate": {"accuracy": info["accuracy"], "loss": info["loss"]},
        "personalized": {"accuracy": info["personalized_accuracy"], "personalized": 1.0},
        "profile": {"num-examples": float(info["num_examples"])},
    }


def drafted_run(source: Path, out: Path, **claims: object) -> Path:
    """A copy of the run ``source`` whose summary (the server's copy of the clients' metrics)
    says ``claims`` of spam-0: ``epsilon``, ``update_epsilon`` and ``sketch_epsilon``
    go to its entry, ``delta``, ``accountant`` and ``epsilon_note`` to the run's
    privacy, and its updates count as private."""
    shutil.copytree(source, out)
    summary = json.loads((out / "summary.json").read_text())
    run = {k: claims.pop(k) for k in ("delta", "accountant", "epsilon_note") if k in claims}
    summary["clients"]["spam-0"].update(claims)
    summary["privacy"].update(updates_private=True, **run)
    (out / "summary.json").write_text(json.dumps(summary))
    return out


@pytest.fixture
def spam0_ledger(tmp_path: Path) -> PrivacyLedger:
    """spam-0's charged ledger, saved in ``<tmp>/state``."""
    return charge_spam0(tmp_path / "state")


@pytest.fixture
def honest_run(run_dir: Path, tmp_path: Path, spam0_ledger: PrivacyLedger) -> Path:  # noqa: F811
    """The run as an honest server drafts it: spam-0's claims are its ledger's."""
    return drafted_run(run_dir, tmp_path / "honest-run", **claims_of(spam0_ledger))


@dataclass
class LiveHub:
    """A hub service over a real store, and one token per role."""

    store: HubStore
    url: str
    publish: str
    heartbeat: str
    read: str


@pytest.fixture
def live_hub(tmp_path: Path) -> Iterator[LiveHub]:
    with HubStore(tmp_path / "hub") as store:
        tokens = {
            scope: store.tokens.create(scope, label=f"{scope} only")
            for scope in ("publish", "heartbeat", "read")
        }
        with serving(create_app(store)) as url:
            yield LiveHub(store, url, tokens["publish"], tokens["heartbeat"], tokens["read"])
