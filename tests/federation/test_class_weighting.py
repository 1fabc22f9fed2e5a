"""`class-weighting = "balanced"`: the local loss weights each label by n / (K * n_label)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fednet.config import load_preset, parse_preset
from fednet.errors import ConfigError
from fednet.federation.client import ClientRuntime
from fednet.training import balanced_class_weights, batches


def test_balanced_weights_are_sklearns_and_zero_for_an_absent_label():
    w = balanced_class_weights([0, 0, 0, 1], 3)
    # n = 4 examples over K = 2 present labels: 4 / (2 * 3) and 4 / (2 * 1)
    assert w.tolist() == pytest.approx([4 / 6, 2.0, 0.0])
    assert w.dtype == torch.float32


@pytest.mark.parametrize(
    ("labels", "message"),
    [([], "at least one label"), ([0, 3], r"labels \[3\] are outside \[0, 2\)")],
)
def test_balanced_weights_refuse_bad_labels_by_name(labels, message):
    with pytest.raises(ValueError, match=message):
        balanced_class_weights(labels, 2)


def _runtime(weighting: str) -> ClientRuntime:
    cfg = load_preset("configs/tiny.toml")
    clients = tuple(dataclasses.replace(c, class_weighting=weighting) for c in cfg.clients)
    cfg = dataclasses.replace(cfg, clients=clients)
    return ClientRuntime(cfg, cfg.clients[0])


def _first_batch_loss(rt: ClientRuntime, state: dict, weight: torch.Tensor | None) -> float:
    """Cross-entropy of the first batch ``rt.train(server_round=1)`` draws, from ``state``."""
    rt.model.load_state_dict(state)
    batch = next(
        batches(
            rt.data.train_texts,
            rt.data.train_labels,
            rt.tokenizer,
            batch_size=rt.client.batch_size,
            max_length=rt.cfg.max_length,
            seed=rt.seed + 1,
        )
    )
    rt.model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        logits = rt.model(batch["input_ids"], batch["attention_mask"])
    return float(torch.nn.functional.cross_entropy(logits, batch["labels"], weight=weight))


def test_a_balanced_client_trains_on_the_weighted_loss_of_its_own_labels():
    rt = _runtime("balanced")
    spam = rt.data.label_names.index("spam")
    weights = balanced_class_weights(rt.data.train_labels, len(rt.data.label_names))
    assert weights[spam] > 1.0 > weights[1 - spam]  # spam is the rare label of SMS spam
    state = {k: v.clone() for k, v in rt.model.state_dict().items()}
    torch.manual_seed(0)
    trained = rt.train(server_round=1, steps=1)["train-loss"]
    weighted = _first_batch_loss(rt, state, weights)
    plain = _first_batch_loss(rt, state, None)
    assert trained == pytest.approx(weighted, rel=1e-5)
    assert abs(weighted - plain) > 1e-3  # the check tells the two losses apart

    rt = _runtime("none")
    state = {k: v.clone() for k, v in rt.model.state_dict().items()}
    torch.manual_seed(0)
    assert rt.train(server_round=1, steps=1)["train-loss"] == pytest.approx(
        _first_batch_loss(rt, state, None), rel=1e-5
    )


def test_balanced_weighting_is_refused_with_dpsgd_and_unknown_values_are_named():
    base = {"federation": {"base-model": "tiny-bert"}}
    client = {"id": "spam-0", "dataset": "sms-spam", "class-weighting": "balanced"}
    assert parse_preset({**base, "clients": [client]}).clients[0].class_weighting == "balanced"
    dp = {
        "enabled": True,
        "dpsgd": True,
        "dpsgd-noise-multiplier": 1.0,
        "dpsgd-sample-rate": 0.1,
    }
    with pytest.raises(ConfigError, match=r"class-weighting.*must be 'none' with `privacy.dpsgd`"):
        parse_preset({**base, "privacy": dp, "clients": [client]})
    with pytest.raises(ConfigError, match=r"class-weighting.*'none' or 'balanced'"):
        parse_preset({**base, "clients": [{**client, "class-weighting": "inverse"}]})
