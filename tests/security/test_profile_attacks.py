"""Crafted client profiles: every field is checked for type and bounds, and against the preset."""

from __future__ import annotations

from typing import Any

import pytest
from flwr.app import ConfigRecord

from fednet.config import PROJECT_ROOT, load_preset
from fednet.strategies.profile import MAX_NUM_EXAMPLES, MAX_RANK, ClientProfile

PRESET = load_preset(PROJECT_ROOT / "configs" / "tiny.toml")


def _honest() -> dict[str, Any]:
    client = PRESET.clients[0]
    return {
        "client-id": client.id,
        "base-model": client.base_model,
        "task": client.task,
        "label-names": ["ham", "spam"],
        "lora-rank": client.lora_rank,
        "lora-alpha": PRESET.lora_alpha(client.lora_rank),
        "num-examples": 120,
    }


def test_an_honest_profile_passes() -> None:
    profile = ClientProfile.from_record(7, ConfigRecord(_honest()), preset=PRESET)
    assert (profile.client_id, profile.rank) == (PRESET.clients[0].id, PRESET.clients[0].lora_rank)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        # path traversal in ids and tasks (they become run directories and group keys)
        ("client-id", "../../etc", "`client-id` must be"),
        ("client-id", "spam-0/../../x", "`client-id` must be"),
        ("task", "../../../tmp/evil", "`task` must be"),
        ("task", "sms-spam/..", "`task` must be"),
        ("base-model", "../models", "`base-model`"),
        # names that are safe but not the preset's
        ("client-id", "mallory", "not in the preset"),
        ("task", "bbc-news", "`task` is 'bbc-news', the preset says"),
        ("base-model", "minilm-l12", "`base-model` is 'minilm-l12'"),
        # oversized or wrongly typed numbers
        ("lora-rank", 10**6, f"`lora-rank` must be in [1, {MAX_RANK}]"),
        ("lora-rank", 64, "`lora-rank` is 64, the preset says"),
        ("lora-rank", 4.5, "`lora-rank` must be an int"),
        ("lora-rank", 0, "`lora-rank` must be in"),
        ("num-examples", 10**12, f"`num-examples` must be in [1, {MAX_NUM_EXAMPLES}]"),
        ("num-examples", -5, "`num-examples` must be in"),
        ("num-examples", True, "`num-examples` must be an int"),
        ("lora-alpha", float("inf"), "`lora-alpha` must be in"),
        ("lora-alpha", 1e9, "`lora-alpha` must be in"),
        ("lora-alpha", 3.0, "`lora-alpha` is 3.0, the preset says"),
        ("label-names", ["only-one"], "2 to 1000 labels"),
        ("label-names", ["x"] * 5000, "2 to 1000 labels"),
        ("label-names", ["ok", "x" * 10_000], "`label-names[1]` must be 1-200 characters"),
    ],
)
def test_crafted_profile_is_refused(field: str, value: Any, why: str) -> None:
    record = {**_honest(), field: value}
    with pytest.raises(ValueError, match=_escape(why)):
        ClientProfile.from_record(7, ConfigRecord(record), preset=PRESET)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("client-id", "../../etc"),
        ("task", "a/../../b"),
        ("lora-rank", 10**6),
        ("num-examples", 10**12),
    ],
)
def test_bounds_hold_without_a_preset(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"`{field}`"):
        ClientProfile.from_record(7, ConfigRecord({**_honest(), field: value}))


def test_missing_field_is_named() -> None:
    record = _honest()
    del record["num-examples"]
    with pytest.raises(ValueError, match="lacks 'num-examples'"):
        ClientProfile.from_record(7, ConfigRecord(record), preset=PRESET)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_every_problem_of_a_crafted_profile_is_named_at_once() -> None:
    record = {**_honest(), "task": "../x", "lora-rank": 10**6, "label-names": ["one"]}
    with pytest.raises(ValueError) as info:
        ClientProfile.from_record(7, ConfigRecord(record), preset=PRESET)
    message = str(info.value)
    assert message.startswith("profile from node 7 (spam-0): ")
    for needle in ("`task` must be a safe name", "`lora-rank` must be in", "2 to 1000 labels"):
        assert needle in message, (needle, message)
    against = {**_honest(), "task": "bbc-news", "lora-rank": 64}  # both differ from the preset
    with pytest.raises(ValueError) as info:
        ClientProfile.from_record(7, ConfigRecord(against), preset=PRESET)
    assert "`task` is 'bbc-news'" in str(info.value) and "`lora-rank` is 64" in str(info.value)
