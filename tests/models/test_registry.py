"""Base models of three architectures: LoRA targets, head sizes, masked mean pooling."""

import pytest
import torch
from peft import PeftModel

from fednet.models import (
    build_classifier,
    create_base_model,
    get_base_model_spec,
    load_adapter,
    load_tokenizer,
    lora_targets,
    save_adapter,
)
from fednet.models.adapters import adapter_fit_problems

# name, hidden size, model class, LoRA targets
TINY = [
    ("tiny-bert", 32, "BertModel", ("query", "value")),
    ("tiny-mpnet", 40, "MPNetModel", ("q", "v")),
    ("tiny-llama", 48, "LlamaModel", ("q_proj", "v_proj")),
]


def build(name, rank=2, labels=3, targets=()):
    return build_classifier(
        name,
        rank=rank,
        lora_alpha=2.0 * rank,
        lora_dropout=0.0,
        target_modules=lora_targets(name, targets),
        num_labels=labels,
        seed=0,
    )


def test_real_models_are_registered_with_their_families_targets():
    assert get_base_model_spec("mpnet-base").lora_targets == ("q", "v")
    assert get_base_model_spec("smollm2-135m").lora_targets == ("q_proj", "v_proj")
    assert get_base_model_spec("minilm-l6").lora_targets == ("query", "value")
    assert len(get_base_model_spec("mpnet-base").packages) == 5


@pytest.mark.parametrize(("name", "hidden", "cls", "targets"), TINY)
def test_tiny_model_gets_lora_on_its_own_attention_and_a_head_of_its_size(
    name, hidden, cls, targets
):
    assert lora_targets(name) == targets
    m = build(name)
    assert type(m.encoder.get_base_model()).__name__ == cls
    assert tuple(m.head.weight.shape) == (3, hidden)
    layers = {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in m.lora_state()}
    assert layers == set(targets)
    # two layers, one A and one B per target
    assert len(m.lora_state()) == 2 * 2 * len(targets)


@pytest.mark.parametrize(("name", "hidden", "cls", "targets"), TINY)
def test_pooling_ignores_padding(name, hidden, cls, targets):
    """The sentence vector is the masked mean: padding a batch does not move it."""
    m = build(name).eval()
    tok = load_tokenizer(name)
    alone = tok(["free entry to win a prize"], return_tensors="pt")
    padded = tok(
        ["free entry to win a prize", "a much longer second sentence " * 4],
        padding=True,
        return_tensors="pt",
    )
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]
    with torch.no_grad():
        a = m.encode(alone["input_ids"], alone["attention_mask"])[0]
        b = m.encode(padded["input_ids"], padded["attention_mask"])[0]
    assert a.shape == (hidden,)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_targets_the_model_lacks_are_refused_naming_its_own():
    with pytest.raises(ValueError, match=r"tiny-llama.*\['q_proj', 'v_proj'\]"):
        build("tiny-llama", targets=("query", "value"))
    assert lora_targets("tiny-llama", ("q_proj",)) == ("q_proj",)


@pytest.mark.parametrize(("name", "hidden", "cls", "targets"), TINY)
def test_adapter_loads_in_peft_on_its_own_base_model_only(tmp_path, name, hidden, cls, targets):
    m = build(name, rank=4)
    with torch.no_grad():
        for k, p in m.encoder.named_parameters():
            if "lora_B" in k:
                p.normal_()
    d = save_adapter(
        tmp_path / name,
        lora_state=m.lora_state(),
        base_model=name,
        rank=4,
        lora_alpha=8.0,
        lora_dropout=0.0,
        target_modules=targets,
        head_state=m.head_state(),
        label_names=("a", "b", "c"),
        task="t",
    )
    peft_model = PeftModel.from_pretrained(create_base_model(name), str(d)).eval()
    ids = torch.randint(5, 1000, (2, 9))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want = m.eval().encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        got = peft_model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, want)
    assert load_adapter(d).base_model == name
    # on another architecture it does not fit: it names the layers that model lacks
    other = next(n for n, *_ in TINY if n != name)
    shapes = {k: tuple(v.shape) for k, v in m.lora_state().items()}
    import json

    config = json.loads((d / "adapter_config.json").read_text())
    assert adapter_fit_problems(config, shapes, other)
    assert adapter_fit_problems(config, shapes, name) == []


def test_copies_share_the_frozen_weights_but_not_their_lora():
    a, b = build("tiny-llama"), build("tiny-llama")
    pa = dict(a.encoder.get_base_model().named_parameters())
    pb = dict(b.encoder.get_base_model().named_parameters())
    frozen = [k for k in pa if "lora_" not in k]
    assert frozen and all(pa[k].data_ptr() == pb[k].data_ptr() for k in frozen)
    assert not any(pa[k].requires_grad for k in frozen)
    lora = [k for k in pa if "lora_" in k]
    assert lora and all(pa[k].data_ptr() != pb[k].data_ptr() for k in lora)
    # a fresh copy has no LoRA layers: peft wrapped the copies, not the shared original
    assert not any("lora_" in k for k, _ in create_base_model("tiny-llama").named_modules())
