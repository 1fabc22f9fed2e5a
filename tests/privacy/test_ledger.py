"""Privacy ledger: charging, refusal, persistence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fednet.errors import BudgetExhaustedError
from fednet.privacy import PrivacyLedger, compute_epsilon

DELTA = 1e-5


def _state(ledger: PrivacyLedger) -> tuple[object, ...]:
    return (ledger.history, ledger.releases, ledger.epsilon)


def test_charge_within_budget_records() -> None:
    ledger = PrivacyLedger("alice", delta=DELTA, budget=4.0)
    eps = ledger.charge(noise_multiplier=1.1, sample_rate=0.01, steps=1000, kind="dpsgd")
    assert eps == ledger.epsilon == pytest.approx(compute_epsilon([(1.1, 0.01, 1000)], delta=DELTA))
    assert ledger.history == [(1.1, 0.01, 1000)]
    assert ledger.remaining == pytest.approx(4.0 - eps)


def test_refusal_raises_and_leaves_ledger_unchanged() -> None:
    ledger = PrivacyLedger("alice", delta=DELTA, budget=2.0)
    ledger.charge(noise_multiplier=1.1, sample_rate=0.01, steps=1000, kind="dpsgd")
    before = _state(ledger)
    assert ledger.would_exceed(noise_multiplier=1.0, sample_rate=1.0, steps=1)
    assert _state(ledger) == before  # the check does not mutate
    with pytest.raises(BudgetExhaustedError) as info:
        ledger.charge(noise_multiplier=1.0, sample_rate=1.0, steps=1, kind="sketch")
    err = info.value
    assert _state(ledger) == before
    assert err.client_id == "alice"
    assert err.budget == 2.0
    assert err.spent == pytest.approx(before[2])
    expected = compute_epsilon([(1.1, 0.01, 1000), (1.0, 1.0, 1)], delta=DELTA)
    assert err.requested == pytest.approx(expected)
    message = str(err)
    for part in ("'alice'", f"{before[2]:.4g}", f"{expected:.4g}", "budget of 2"):
        assert part in message


def test_would_exceed_matches_charge() -> None:
    ledger = PrivacyLedger("bob", delta=DELTA, budget=1.0)
    z_ok, z_bad = 8.0, 2.0
    assert compute_epsilon([(z_ok, 1.0, 1)], delta=DELTA) < 1.0
    assert compute_epsilon([(z_bad, 1.0, 1)], delta=DELTA) > 1.0
    assert not ledger.would_exceed(noise_multiplier=z_ok, sample_rate=1.0, steps=1)
    assert ledger.would_exceed(noise_multiplier=z_bad, sample_rate=1.0, steps=1)
    ledger.charge(noise_multiplier=z_ok, sample_rate=1.0, steps=1, kind="sketch")
    with pytest.raises(BudgetExhaustedError):
        ledger.charge(noise_multiplier=z_bad, sample_rate=1.0, steps=1, kind="sketch")


def test_zero_noise_is_infinite_epsilon() -> None:
    finite = PrivacyLedger("c", delta=DELTA, budget=1e6)
    assert finite.would_exceed(noise_multiplier=0.0, sample_rate=0.01, steps=1)
    with pytest.raises(BudgetExhaustedError):
        finite.charge(noise_multiplier=0.0, sample_rate=0.01, steps=1, kind="update")
    assert finite.epsilon == 0.0 and finite.history == []

    unlimited = PrivacyLedger("c", delta=DELTA)
    assert unlimited.budget == math.inf
    assert (
        unlimited.charge(noise_multiplier=0.0, sample_rate=1.0, steps=1, kind="update") == math.inf
    )
    assert unlimited.epsilon == math.inf


def test_record_ignores_budget() -> None:
    ledger = PrivacyLedger("c", delta=DELTA, budget=0.5)
    ledger.record(noise_multiplier=1.0, sample_rate=1.0, steps=1, kind="sketch")
    assert ledger.epsilon > 0.5
    assert ledger.remaining == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"client_id": ""}, "client_id"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"budget": 0.0}, "budget"),
        ({"budget": -1.0}, "budget"),
        ({"accountant": "nope"}, "unknown accountant .nope.; valid: rdp"),
    ],
)
def test_constructor_validation(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"client_id": "c", "delta": DELTA, "budget": 1.0, **kwargs}
    client_id = args.pop("client_id")
    with pytest.raises(ValueError, match=match):
        PrivacyLedger(client_id, **args)  # type: ignore[arg-type]


def test_unknown_kind_is_refused() -> None:
    ledger = PrivacyLedger("c", delta=DELTA)
    with pytest.raises(ValueError, match="dpsgd, sketch, update, prototype; got 'train'"):
        ledger.charge(noise_multiplier=1.0, sample_rate=1.0, steps=1, kind="train")
    assert ledger.history == []


def test_save_load_round_trip(tmp_path: Path) -> None:
    ledger = PrivacyLedger("alice", delta=DELTA, budget=6.0)
    ledger.charge(noise_multiplier=1.1, sample_rate=0.01, steps=1000, kind="dpsgd")
    ledger.charge(noise_multiplier=5.0, sample_rate=1.0, steps=1, kind="sketch")
    ledger.charge(noise_multiplier=2.0, sample_rate=1.0, steps=1, kind="update")
    path = tmp_path / "ledgers" / "alice.json"
    ledger.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["alice.json"]  # no temp file left

    restored = PrivacyLedger.load(path)
    assert restored.epsilon == pytest.approx(ledger.epsilon, rel=1e-12)
    assert restored.releases == ledger.releases
    assert (restored.client_id, restored.delta, restored.budget) == ("alice", DELTA, 6.0)

    # a restarted client with the live configuration picks up where it left off
    resumed = PrivacyLedger.load_or_create(path, "alice", delta=DELTA, budget=6.0)
    assert resumed.epsilon == pytest.approx(ledger.epsilon, rel=1e-12)
    fresh = PrivacyLedger.load_or_create(tmp_path / "missing.json", "bob", delta=DELTA)
    assert fresh.epsilon == 0.0


def test_infinite_budget_saves_as_standard_json(tmp_path: Path) -> None:
    ledger = PrivacyLedger("c", delta=DELTA)
    ledger.record(noise_multiplier=1.0, sample_rate=0.5, steps=3, kind="update")
    path = tmp_path / "c.json"
    ledger.save(path)

    def refuse(constant: str) -> object:
        raise AssertionError(f"non-standard JSON constant {constant}")

    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data["budget"] is None
    assert PrivacyLedger.load(path).budget == math.inf


def test_load_state_dict_rejects_other_client_and_bad_state() -> None:
    ledger = PrivacyLedger("alice", delta=DELTA)
    ledger.record(noise_multiplier=1.0, sample_rate=1.0, steps=1, kind="sketch")
    state = ledger.state_dict()
    with pytest.raises(ValueError, match="client_id must be 'bob', got 'alice'"):
        PrivacyLedger("bob", delta=DELTA).load_state_dict(state)
    bad = dict(state, history=[[1.0, 2.0, 1]])
    with pytest.raises(ValueError, match="sample_rate"):
        PrivacyLedger("alice", delta=DELTA).load_state_dict(bad)
    bad = dict(state, kinds=[])
    with pytest.raises(ValueError, match="kinds"):
        PrivacyLedger("alice", delta=DELTA).load_state_dict(bad)


def test_load_rejects_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        PrivacyLedger.load(path)


def test_cached_composition_matches_opacus_and_splits_by_kind() -> None:
    from opacus.accountants import RDPAccountant

    from fednet.privacy import RDP_ORDERS

    ledger = PrivacyLedger("alice", delta=DELTA)
    history = [
        (1.1, 0.01, 100, "dpsgd"),
        (2.0, 0.3, 5, "update"),
        (3.0, 1.0, 1, "sketch"),
        (1.1, 0.01, 100, "dpsgd"),
    ]
    for z, q, s, kind in history:
        ledger.record(noise_multiplier=z, sample_rate=q, steps=s, kind=kind)

    def opacus_eps(entries):
        acc = RDPAccountant()
        acc.history = [(z, q, s) for z, q, s, _ in entries]
        return acc.get_epsilon(delta=DELTA, alphas=list(RDP_ORDERS))

    assert ledger.epsilon == pytest.approx(opacus_eps(history), rel=1e-12)
    updates = [h for h in history if h[3] != "sketch"]
    assert ledger.epsilon_of(("dpsgd", "update")) == pytest.approx(opacus_eps(updates), rel=1e-12)
    assert ledger.epsilon_of(("sketch",)) == pytest.approx(opacus_eps(history[2:3]), rel=1e-12)
    after = ledger.epsilon_after(noise_multiplier=1.5, sample_rate=0.2, steps=3)
    assert after == pytest.approx(opacus_eps([*history, (1.5, 0.2, 3, "update")]), rel=1e-12)
    ledger.record(noise_multiplier=0.0, sample_rate=1.0, steps=1, kind="update")
    assert math.isinf(ledger.epsilon) and ledger.epsilon_of(("sketch",)) < math.inf


def test_notes_persist(tmp_path: Path) -> None:
    ledger = PrivacyLedger("alice", delta=DELTA)
    ledger.charge(noise_multiplier=1.0, sample_rate=0.5, steps=3, kind="update", note="run:7")
    ledger.save(tmp_path / "l.json")
    back = PrivacyLedger.load(tmp_path / "l.json")
    assert back.has_note("run:7") and not back.has_note("run:8")
    assert back.epsilon == pytest.approx(ledger.epsilon, rel=1e-12)


def test_reset_ledgers_retires_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from fednet.privacy import reset_ledgers

    path = tmp_path / "alice" / "ledger-0123456789abcdef.json"
    path.parent.mkdir()
    ledger = PrivacyLedger("alice", delta=DELTA, budget=5.0)
    ledger.charge(noise_multiplier=1.0, sample_rate=1.0, steps=1, kind="sketch")
    ledger.save(path)
    with pytest.raises(ValueError, match="plain name"):
        reset_ledgers(tmp_path, "../alice")
    with pytest.raises(ValueError, match="no ledger-ffffffffffffffff.json"):
        reset_ledgers(tmp_path, "alice", fingerprint="ffffffffffffffff")
    with caplog.at_level("WARNING", logger="fednet.privacy.ledger"):
        (record,) = reset_ledgers(tmp_path, "alice")
    assert not path.exists() and (path.parent / record["kept_as"]).is_file()
    assert record["epsilon"] == pytest.approx(ledger.epsilon)
    log = [
        json.loads(line) for line in (path.parent / "ledger-resets.log").read_text().splitlines()
    ]
    assert log == [record]
    assert "reset" in caplog.text and "alice" in caplog.text
    fresh = PrivacyLedger.load_or_create(path, "alice", delta=DELTA, budget=5.0)
    assert fresh.epsilon == 0.0


def test_reset_ledger_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fednet.cli import main

    path = tmp_path / "bob" / "ledger-00000000000000aa.json"
    path.parent.mkdir()
    ledger = PrivacyLedger("bob", delta=DELTA)
    ledger.charge(noise_multiplier=2.0, sample_rate=1.0, steps=1, kind="update")
    ledger.save(path)
    argv = ["privacy", "reset-ledger", "--state-dir", str(tmp_path), "--client", "bob"]
    assert main(argv) == 0
    assert "reset bob ledger-00000000000000aa.json" in capsys.readouterr().out
    assert not path.exists()
    assert main(argv) == 2  # nothing left to reset: a clear error
    assert "no ledger of client 'bob'" in capsys.readouterr().err
