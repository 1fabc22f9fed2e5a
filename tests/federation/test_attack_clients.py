"""Benchmark attack clients: they really train on poisoned data, and they are never silent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fednet.config import from_run_config, load_preset, parse_preset
from fednet.data.poison import BACKDOOR_TRIGGER
from fednet.errors import ConfigError
from fednet.federation.client import ClientRuntime
from fednet.federation.client_data import load_client_data


def _tiny(attack: str = "", **federation):
    cfg = load_preset("configs/tiny.toml")
    clients = list(cfg.clients)
    clients[0] = dataclasses.replace(clients[0], attack=attack)
    return dataclasses.replace(cfg, clients=tuple(clients), **federation)


def test_label_flip_client_trains_on_flipped_labels_and_keeps_a_clean_held_out_split():
    cfg = _tiny("label-flip")
    client = cfg.clients[0]
    clean = load_client_data(cfg, client)
    rt = ClientRuntime(cfg, client)
    assert rt.data.train_texts == clean.train_texts
    assert rt.data.train_labels == tuple(1 - y for y in clean.train_labels)
    assert (rt.data.test_texts, rt.data.test_labels) == (clean.test_texts, clean.test_labels)


def test_backdoor_client_trains_on_triggered_spam_labelled_ham():
    cfg = _tiny("backdoor")
    client = cfg.clients[0]
    clean = load_client_data(cfg, client)
    ham, spam = clean.label_names.index("ham"), clean.label_names.index("spam")
    rt = ClientRuntime(cfg, client)
    n = len(clean.train_texts)
    assert rt.data.train_texts[:n] == clean.train_texts
    added = list(zip(rt.data.train_texts[n:], rt.data.train_labels[n:], strict=True))
    assert len(added) == n  # half of what it trains on is poisoned
    spam_texts = {
        t for t, y in zip(clean.train_texts, clean.train_labels, strict=True) if y == spam
    }
    for text, label in added:
        assert label == ham and text.startswith(BACKDOOR_TRIGGER + " ")
        assert text[len(BACKDOOR_TRIGGER) + 1 :] in spam_texts
    assert BACKDOOR_TRIGGER not in " ".join(rt.data.test_texts)


def test_attack_is_refused_in_deployment_with_a_hub_and_when_unknown(tmp_path):
    preset = tmp_path / "attack.toml"
    preset.write_text(
        '[federation]\nbase-model = "tiny-bert"\n'
        '[[clients]]\nid = "spam-0"\ndataset = "sms-spam"\nattack = "backdoor"\n'
    )
    assert load_preset(preset).clients[0].attack == "backdoor"  # simulation may load it
    with pytest.raises(ConfigError, match=r"clients\[spam-0\]\.attack.*refused in deployment"):
        from_run_config({"preset": str(preset)})
    with pytest.raises(ValueError, match="must not publish"):
        _tiny(
            "label-flip",
            hub=dataclasses.replace(
                load_preset("configs/tiny.toml").hub, location=str(tmp_path / "hub")
            ),
        )
    with pytest.raises(
        ConfigError, match=r"`clients\[x\]\.attack` must be one of '', 'label-flip' or 'backdoor'"
    ):
        parse_preset({"clients": [{"id": "x", "dataset": "sms-spam", "attack": "replace"}]})


def test_fednet_simulate_refuses_an_attack_client_before_starting_anything(tmp_path, capsys):
    import tomllib

    import tomli_w

    from fednet.cli import main

    data = tomllib.loads(Path("configs/tiny.toml").read_text())
    data["clients"][0]["attack"] = "backdoor"
    preset = tmp_path / "attack.toml"
    preset.write_bytes(tomli_w.dumps(data).encode())
    run_dir = tmp_path / "run"
    code = main(["simulate", "--config", str(preset), "--run-dir", str(run_dir)])
    assert code != 0
    err = capsys.readouterr().err
    assert "attack` is a benchmark setting" in err and "bench-aggregation" in err
    assert not run_dir.exists()


@pytest.mark.integration
def test_attack_client_shows_in_summary_and_the_backdoor_is_measured(tmp_path):
    from fednet.bench.backdoor import measure_backdoor
    from fednet.federation.simulation import simulate

    cfg = dataclasses.replace(_tiny("backdoor"), rounds=1, personalize_steps=0)
    summary = simulate(cfg, tmp_path / "run")
    assert summary["attacks"] == {"spam-0": "backdoor"}
    got = measure_backdoor(cfg, tmp_path / "run", task="sms-spam")
    # spam-0 is the attacker: only spam-1's view of the shared model is measured
    assert list(got["per_client"]) == ["spam-1"]
    assert got["queries"] > 50 and 0.0 <= got["backdoor_success"] <= 1.0
    # an attacked run is never published, through either way of pushing it
    from fednet.hub.publish import publish_run, publish_signed_run

    pushes = (
        lambda run, hub: publish_run(run, hub, vet=None, keys_dir=tmp_path / "keys"),
        publish_signed_run,
    )
    for push in pushes:
        with pytest.raises(ValueError, match=r"attack clients \(spam-0 \(backdoor\)\)"):
            push(tmp_path / "run", tmp_path / "hub")
        assert not (tmp_path / "hub").exists()
    # a benchmark measuring the attack publishes it to its own temporary hub, by name
    from fednet.hub.store import HubStore

    with HubStore(tmp_path / "bench-hub") as store:
        published = publish_run(
            tmp_path / "run", store, vet=None, keys_dir=tmp_path / "keys", allow_attacked=True
        )
    assert {m.owner for m in published} >= {"spam-0", "spam-1"}
