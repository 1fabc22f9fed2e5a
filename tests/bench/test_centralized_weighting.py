"""The centralised baseline trains with the label weights its clients use."""

from __future__ import annotations

import dataclasses

import pytest

from fednet.bench.runs import train_centralized, variant
from fednet.config import load_preset
from fednet.federation.client_data import load_client_data
from fednet.training import balanced_class_weights


@pytest.mark.parametrize("weighting", ["none", "balanced"])
def test_centralized_baseline_weights_labels_as_its_clients_do(tmp_path, weighting):
    cfg = load_preset("configs/tiny.toml")
    clients = tuple(dataclasses.replace(c, class_weighting=weighting) for c in cfg.clients)
    cfg = dataclasses.replace(cfg, clients=clients, rounds=1)
    result = train_centralized(cfg, tmp_path / "central")
    if weighting == "none":
        assert result["class_weights"] is None
        return
    union = variant(cfg, "generalist")  # the baseline's one label space over every task
    labels = [y for c in union.clients for y in load_client_data(union, c).train_labels]
    expected = balanced_class_weights(labels, len(result["label_names"])).tolist()
    assert result["class_weights"] == pytest.approx(expected)
