"""The server's seeded initial state for a federation of several base models."""

import pytest

from fednet.config import load_preset
from fednet.errors import ConfigError
from fednet.federation.server import initial_state
from fednet.strategies import ClientProfile


def _profiles(cfg):
    return {
        i: ClientProfile(
            node_id=i,
            client_id=c.id,
            base_model=c.base_model,
            task=c.task,
            label_names=("ham", "spam") if c.task == "sms-spam" else tuple("abcde"),
            rank=c.lora_rank,
            lora_alpha=cfg.lora_alpha(c.lora_rank),
            num_examples=10,
        )
        for i, c in enumerate(cfg.clients)
    }


def test_one_lora_per_base_model_and_a_head_per_task_and_base_model():
    cfg = load_preset("configs/hetero-tiny.toml")
    state = initial_state(cfg, _profiles(cfg))
    assert set(state.lora) == {"tiny-bert", "tiny-llama", "tiny-mpnet"}
    assert state.rank_of("tiny-llama") == 4  # the largest rank of its clients
    widths = {k: tuple(v["head.weight"].shape) for k, v in state.heads.items()}
    assert widths == {
        "tiny-bert:sms-spam": (2, 32),
        "tiny-mpnet:sms-spam": (2, 40),
        "tiny-llama:sms-spam": (2, 48),
        "tiny-llama:bbc-news": (5, 48),
    }
    llama = {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in state.lora["tiny-llama"]}
    assert llama == {"q_proj", "v_proj"}


def test_a_head_key_joining_base_models_of_different_widths_is_refused():
    cfg = load_preset("configs/hetero-tiny.toml")
    with pytest.raises(ConfigError, match="head 'sms-spam' is shared by clients of different"):
        initial_state(cfg, _profiles(cfg), head_of=lambda p: p.task)


@pytest.mark.parametrize(
    ("preset", "bases"),
    [
        ("configs/hetero.toml", {"minilm-l6", "mpnet-base", "smollm2-135m"}),
        ("configs/hetero-tiny.toml", {"tiny-bert", "tiny-mpnet", "tiny-llama"}),
    ],
)
def test_mixed_presets_put_one_task_on_every_family(preset, bases):
    cfg = load_preset(preset)
    assert {c.base_model for c in cfg.clients} == bases
    spam = {c.base_model for c in cfg.clients if c.task == "sms-spam"}
    assert spam == bases
    assert cfg.lora.target_modules == ()  # each base model's own attention projections
    assert cfg.max_length <= 64
