"""Model building, LoRA state round trips and PEFT-format adapters on disk."""

import pytest
import torch
from peft import PeftModel

from fednet.models import (
    available_base_models,
    build_classifier,
    create_base_model,
    load_adapter,
    save_adapter,
)


def build(rank=4, labels=3, seed=0):
    return build_classifier(
        "tiny-bert",
        rank=rank,
        lora_alpha=2.0 * rank,
        lora_dropout=0.0,
        target_modules=("query", "value"),
        num_labels=labels,
        seed=seed,
    )


def test_registry():
    assert {"minilm-l6", "tiny-bert"} <= set(available_base_models())
    with pytest.raises(ValueError, match="valid: .*minilm-l6"):
        create_base_model("gpt-17")


def test_only_lora_and_head_train():
    m = build()
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or n.startswith("head.") for n in names)
    logits = m(torch.randint(0, 100, (2, 7)), torch.ones(2, 7, dtype=torch.long))
    assert logits.shape == (2, 3)


def test_base_is_identical_across_builds_and_lora_init_is_seeded():
    a, b = build(seed=3), build(seed=3)
    sa = a.encoder.get_base_model().state_dict()
    sb = b.encoder.get_base_model().state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(torch.equal(v, b.lora_state()[k]) for k, v in a.lora_state().items())
    c = build(seed=4)
    assert any(not torch.equal(v, c.lora_state()[k]) for k, v in a.lora_state().items())


def test_rank_validation():
    with pytest.raises(ValueError, match="lora-rank"):
        build(rank=0)


def test_adapter_round_trip_and_peft_load(tmp_path):
    m = build(rank=4)
    with torch.no_grad():
        for p in m.encoder.parameters():
            if p.requires_grad:
                p.add_(0.1)
    out = save_adapter(
        tmp_path / "a",
        lora_state=m.lora_state(),
        base_model="tiny-bert",
        rank=4,
        lora_alpha=8.0,
        lora_dropout=0.0,
        target_modules=("query", "value"),
        head_state=m.head_state(),
        label_names=("x", "y", "z"),
        task="t",
    )
    saved = load_adapter(out)
    assert (
        saved.rank == 4 and saved.label_names == ("x", "y", "z") and saved.base_model == "tiny-bert"
    )
    peft_model = PeftModel.from_pretrained(create_base_model("tiny-bert"), str(out))
    ids = torch.randint(0, 100, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.long)
    want = m.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    got = peft_model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(want, got, atol=1e-5)
    assert not (tmp_path / "a.tmp").exists()
