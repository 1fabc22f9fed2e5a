"""The poisoned-update corpus against the real accept path and the robust wrappers."""

import pytest
import torch
from flwr.app import ArrayRecord
from flwr.supercore.task_identity import TaskIdentity

from fednet.config import parse_preset
from fednet.strategies import ClientProfile, FedLoRA, GlobalState, create_wrapper

from .poisoned import ADVERSARIAL, IN, MALFORMED, OUT, RANK, A, B, honest_update, message


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def fedlora(n=6):
    s = FedLoRA()
    s.profiles = {
        i: ClientProfile(i, f"c{i}", "tiny", "t", ("ham", "spam"), RANK, 2.0 * RANK, 10)
        for i in range(1, n + 1)
    }
    s._state_for_round = GlobalState(
        lora={"tiny": {A: torch.ones(RANK, IN), B: torch.ones(OUT, RANK)}},
        heads={"tiny:t": {"head.weight": torch.full((2, OUT), 0.1), "head.bias": torch.zeros(2)}},
    )
    return s


def honest_replies(n):
    return [message(i, *honest_update(i)) for i in range(1, n + 1)]


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_reply_is_rejected_by_name_and_never_aggregated(name):
    craft, reason = MALFORMED[name]
    bad = message(6, *craft(*honest_update(6)))
    s, clean = fedlora(), fedlora()
    arrays, metrics = s.aggregate_train(1, [*honest_replies(5), bad])
    clean_arrays, _ = clean.aggregate_train(1, honest_replies(5))
    assert metrics["clients"] == 5
    got, want = GlobalState.from_arrayrecord(arrays), GlobalState.from_arrayrecord(clean_arrays)
    for k in want.lora["tiny"]:
        assert torch.equal(got.lora["tiny"][k], want.lora["tiny"][k]), name
    for k in want.heads["tiny:t"]:
        assert torch.equal(got.heads["tiny:t"][k], want.heads["tiny:t"][k]), name
    (ev,) = s.events
    assert ev["client"] == "c6" and ev["status"] == "rejected" and ev["stage"] == "validate"
    assert reason in ev["reasons"], ev
    rows = {r["client"]: r for r in s.contributions(1, arrays)}
    assert rows["c6"]["status"] == "rejected" and rows["c6"]["contribution"] is None
    assert rows["c1"]["status"] == "accepted"


def test_smuggled_record_is_rejected_as_not_allowed():
    bad = message(6, *honest_update(6), texts=ArrayRecord({"x": torch.zeros(3)}))
    s = fedlora()
    s.aggregate_train(1, [*honest_replies(5), bad])
    assert s.events[0]["reasons"] == ["not-allowed"]


@pytest.mark.parametrize("attack", sorted(ADVERSARIAL))
@pytest.mark.parametrize("robust", ["none", "norm-bound", "trimmed-mean", "median", "multi-krum"])
def test_adversarial_reply_is_well_formed_and_the_wrappers_contain_it(attack, robust):
    ref = fedlora()._state_for_round
    lora, head = ADVERSARIAL[attack](*honest_update(6), ref.lora["tiny"], ref.heads["tiny:t"])
    bad = message(6, lora, head)
    cfg = parse_preset(
        {"clients": [{"id": "x", "dataset": "sms-spam"}], "strategy": {"robust": robust}}
    ).strategy
    s = create_wrapper(robust, fedlora(), cfg)
    arrays, metrics = s.aggregate_train(1, [*honest_replies(5), bad])
    assert not [e for e in s.events if e["stage"] == "validate"]  # it passes validation
    clean_arrays, _ = fedlora().aggregate_train(1, honest_replies(5))
    plain_arrays, _ = fedlora().aggregate_train(1, [*honest_replies(5), bad])

    def err(arr):
        got = GlobalState.from_arrayrecord(arr).lora["tiny"]
        want = GlobalState.from_arrayrecord(clean_arrays).lora["tiny"]
        return sum(float((got[k] - want[k]).norm()) for k in want)

    undefended = err(plain_arrays)
    assert undefended > 0.5, attack  # the attack moves the adapter (honest step: 2.8)
    if robust == "none":
        assert s.events == []
        return
    if robust == "norm-bound" and attack == "sign-flip":
        assert s.events == []  # a sign flip of honest size passes a norm bound by design
        return
    # norm bounding only limits the shift; the others remove nearly all of it
    assert err(arrays) < (0.5 if robust == "norm-bound" else 0.15) * undefended
    assert "c6" in {e["client"] for e in s.events}
