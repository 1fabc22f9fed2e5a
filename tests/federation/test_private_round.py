"""A client's side of central DP: the whole run charged once at join, nothing beyond it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from fednet.config import load_preset
from fednet.errors import BudgetExhaustedError
from fednet.federation.client import ClientRuntime
from fednet.federation.private import PrivateRound
from fednet.privacy import PrivacyConfig, compute_epsilon


def _runtime(budget: float) -> ClientRuntime:
    base = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(
        base,
        rounds=3,
        strategy=dataclasses.replace(base.strategy, fraction_train=0.25),
        privacy=PrivacyConfig(
            enabled=True,
            epsilon_budget=budget,
            sketch_epsilon=min(1.0, budget),
            update_mode="central",
            update_noise_multiplier=1.1,
        ),
    )
    return ClientRuntime(cfg, cfg.clients[0])


def test_join_charges_the_whole_run_once_per_run(tmp_path):
    rnd = PrivateRound(_runtime(budget=50.0), state_dir=tmp_path)
    want = compute_epsilon([(1.1, 0.25, 3)], delta=1e-5)
    assert rnd.join_central_run(11) == pytest.approx(want, rel=1e-9)
    assert rnd.join_central_run(11) == pytest.approx(want, rel=1e-9)  # the same run: once
    again = compute_epsilon([(1.1, 0.25, 3), (1.1, 0.25, 3)], delta=1e-5)
    assert rnd.join_central_run(12) == pytest.approx(again, rel=1e-9)  # a new run: again
    assert rnd.ledger_path.parent == tmp_path / "spam-0"


def test_join_refused_when_the_run_does_not_fit(tmp_path):
    rnd = PrivateRound(_runtime(budget=0.5), state_dir=tmp_path)
    with pytest.raises(BudgetExhaustedError, match="over the budget"):
        rnd.join_central_run(1)
    assert not rnd.ledger_path.exists()


def test_no_round_beyond_the_rounds_charged(tmp_path):
    rnd = PrivateRound(_runtime(budget=50.0), state_dir=tmp_path)
    rnd.check_central_round(3, personalize=False)
    rnd.check_central_round(4, personalize=True)  # personalisation releases nothing
    with pytest.raises(BudgetExhaustedError, match="beyond the 3 rounds"):
        rnd.check_central_round(4, personalize=False)


def test_sketch_subsample_is_poisson_not_fixed_size(tmp_path, monkeypatch):
    """A fixed-size subset doubles the sums' sensitivity under add/remove adjacency (adding
    one example can swap one member for another); a Poisson subsample keeps the analysis."""
    import fednet.training

    rt = _runtime(budget=50.0)
    n = len(rt.data.train_texts)
    m = n // 2
    rnd = PrivateRound(rt, state_dir=tmp_path)
    rnd.cfg = dataclasses.replace(rnd.cfg, sketch_examples=m)
    sizes: list[int] = []
    real = fednet.training.embed_texts

    def spy(encode, texts, tokenizer, **kw):
        sizes.append(len(texts))
        return real(encode, texts, tokenizer, **kw)

    monkeypatch.setattr(fednet.training, "embed_texts", spy)
    for r in range(8):
        sketch = rnd.build_sketch(noise_multiplier=1.0, server_round=r)
        assert all(torch.isfinite(t).all() for t in sketch.values())
    assert len(set(sizes)) > 1  # the subsample's size varies: each example is in it or not
    assert all(0 <= s <= n for s in sizes) and abs(sum(sizes) / len(sizes) - m) < 0.25 * m


def test_a_new_seed_or_a_new_client_id_does_not_buy_a_new_budget(tmp_path):
    """The ledger is keyed by where the data comes from, not by the preset's seed (which
    only reshuffles the same rows) nor by a client id that can be renamed."""
    from fednet.errors import BudgetExhaustedError

    rt = _runtime(budget=50.0)
    first = PrivateRound(rt, state_dir=tmp_path)
    first.join_central_run(1)
    reseeded_cfg = dataclasses.replace(rt.cfg, seed=rt.cfg.seed + 1, test_fraction=0.3)
    reseeded = PrivateRound(
        ClientRuntime(reseeded_cfg, reseeded_cfg.clients[0]), state_dir=tmp_path
    )
    assert reseeded.ledger_path == first.ledger_path
    assert reseeded.ledger().epsilon == pytest.approx(first.ledger().epsilon)
    renamed = dataclasses.replace(rt.cfg.clients[0], id="spam-0-again")
    cfg = dataclasses.replace(rt.cfg, clients=(renamed, *rt.cfg.clients[1:]))
    with pytest.raises(BudgetExhaustedError, match="already has a privacy ledger under client"):
        PrivateRound(ClientRuntime(cfg, renamed), state_dir=tmp_path).join_central_run(2)
    other_share = PrivateRound(ClientRuntime(rt.cfg, rt.cfg.clients[1]), state_dir=tmp_path)
    assert other_share.fingerprint != first.fingerprint  # another partition is other data


def test_a_local_file_is_fingerprinted_by_its_bytes(tmp_path):
    from fednet.federation.private import data_fingerprint

    data = tmp_path / "mine.csv"
    data.write_text("text,label\\nhello,a\\nbye,b\\n", encoding="utf-8")
    client = dataclasses.replace(load_preset("configs/tiny.toml").clients[0], dataset=str(data))
    before = data_fingerprint(client)
    assert data_fingerprint(client) == before
    data.write_text("text,label\\nhello,a\\nbye,a\\n", encoding="utf-8")
    assert data_fingerprint(client) != before


def test_planned_releases_are_the_ledgers_own_entries(tmp_path):
    """A round's plan and the central join are ledger Releases, charged as they are."""
    import ast
    from pathlib import Path

    from fednet.privacy.ledger import PrivacyLedger, Release

    rnd = PrivateRound(_runtime(budget=50.0), state_dir=tmp_path)
    central = rnd.central_release()
    assert central == Release(noise_multiplier=1.1, sample_rate=0.25, steps=3, kind="update")
    plan = rnd.plan(steps=2, release_sketch=True)
    assert [type(r) for r in plan] == [Release] * len(plan)
    assert {r.kind for r in plan} == {"sketch"}  # central mode: the update is charged at join
    ledger = PrivacyLedger("spam-0", delta=1e-5, budget=50.0)
    for r in (central, *plan):
        ledger.charge(
            noise_multiplier=r.noise_multiplier,
            sample_rate=r.sample_rate,
            steps=r.steps,
            kind=r.kind,
        )
    assert ledger.releases == (central, *plan)
    with pytest.raises(ValueError, match="kind must be one of dpsgd, sketch, update"):
        Release(noise_multiplier=1.0, sample_rate=1.0, steps=1, kind="other")
    classes = [
        path.name
        for path in Path("fednet").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and node.name == "Release"
    ]
    assert classes == ["ledger.py"]


def test_a_round_of_a_run_never_joined_joins_it_first(tmp_path):
    """The attack: a server skips the profile query (where a client joins a central
    run and charges it) and sends training rounds straight away."""
    want = compute_epsilon([(1.1, 0.25, 3)], delta=1e-5)
    for rnd in (1, 2, 3):
        PrivateRound(_runtime(budget=50.0), state_dir=tmp_path).run(
            run_id=21, server_round=rnd, steps=1, release_sketch=False
        )
    ledger = PrivateRound(_runtime(budget=50.0), state_dir=tmp_path).ledger()
    assert ledger.epsilon == pytest.approx(want, rel=1e-9)  # charged once, for the whole run
    with pytest.raises(BudgetExhaustedError, match="over the budget"):
        PrivateRound(_runtime(budget=0.5), state_dir=tmp_path / "small").run(
            run_id=22, server_round=1, steps=1, release_sketch=False
        )


def test_two_processes_of_one_client_cannot_both_spend_the_last_of_its_budget(tmp_path):
    """The attack: two runs of one client at once (two ClientApp processes) both pass
    the budget check, train, and charge; the last save wins, and the ledger shows one
    release of the two that left. The charge now happens, under a lock on the
    ledger, before the round trains."""
    import contextlib
    import threading

    base = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(
        base,
        privacy=PrivacyConfig(
            enabled=True,
            update_mode="local",
            update_noise_multiplier=2.0,
            epsilon_budget=2.5,  # one release of (2, 1, 1) fits, two do not
        ),
    )
    rounds = [PrivateRound(ClientRuntime(cfg, cfg.clients[0]), state_dir=tmp_path) for _ in "ab"]
    checked = threading.Barrier(2, timeout=30)
    for r in rounds:  # both reach training before either charges, as two processes may
        original = r.rt.train

        def train(*args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            with contextlib.suppress(threading.BrokenBarrierError):
                checked.wait()
            return _original(*args, **kwargs)

        r.rt.train = train  # type: ignore[method-assign]
    outcome: list[str] = []

    def go(r: PrivateRound) -> None:
        try:
            res = r.run(run_id=1, server_round=1, steps=1, release_sketch=False)
            outcome.append("released" if res.lora is not None else "kept")
        except BudgetExhaustedError:
            outcome.append("refused")
        finally:
            checked.abort()

    threads = [threading.Thread(target=go, args=(r,)) for r in rounds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    ledger = rounds[0].ledger()
    assert sorted(outcome) == ["refused", "released"], outcome
    assert len(ledger.releases) == outcome.count("released") == 1


@pytest.mark.parametrize("epsilon", [None, 3.0])
def test_dpsgd_epsilon_does_not_reveal_the_number_of_examples(epsilon):
    """The attack: with q = batch-size / n, the epsilon a client reports (and signs)
    is a one-to-one function of n, which the protocol withholds; a server tabulates
    epsilon over n and reads n off. The rate is now a public setting."""
    import types

    base = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(
        base,
        privacy=PrivacyConfig(
            enabled=True,
            epsilon_budget=50.0,
            dpsgd=True,
            dpsgd_sample_rate=0.05,
            dpsgd_epsilon=epsilon,
            dpsgd_noise_multiplier=None if epsilon else 1.0,
        ),
    )
    charged = set()
    for n in (200, 201, 1234):
        rt = types.SimpleNamespace(cfg=cfg, client=cfg.clients[0], num_examples=n)
        (release,) = PrivateRound(rt, state_dir=Path("unused")).plan(steps=10, release_sketch=False)
        charged.add((release.noise_multiplier, release.sample_rate, release.steps))
    assert charged == {(next(iter(charged))[0], 0.05, 10)}


def test_dpsgd_needs_a_public_sample_rate():
    from fednet.errors import ConfigError

    with pytest.raises(ConfigError, match="dpsgd-sample-rate.*must be set"):
        PrivacyConfig(enabled=True, dpsgd=True, dpsgd_noise_multiplier=1.0)
