"""DP-SGD on a tiny peft-LoRA BERT with a linear head."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from transformers import BertConfig, BertModel

from fednet.privacy import PrivacyLedger, compute_epsilon, make_private, tree_norm
from fednet.privacy.randomness import NoiseSource

DELTA = 1e-5

pytestmark = [
    pytest.mark.filterwarnings("ignore:Secure RNG turned off:UserWarning"),
    # the first trainable layer sits behind frozen embeddings; opacus's hooks still fire
    pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]


class TinyClassifier(nn.Module):
    """Frozen tiny BERT + LoRA on query/value + mean pooling + linear head."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=100,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            hidden_dropout_prob=0.0,  # deterministic forward, so DP and plain steps compare
            attention_probs_dropout_prob=0.0,
        )
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.0)
        self.encoder = get_peft_model(BertModel(config), lora)
        # peft starts lora_B at zero; perturb it so lora_A gets gradient on the first step
        for name, param in self.encoder.named_parameters():
            if "lora_B" in name:
                nn.init.normal_(param, std=0.1)
        self.head = nn.Linear(16, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        return self.head(pooled)


def _data(n: int = 64, seq: int = 6, seed: int = 0, vocab: int = 48) -> TensorDataset:
    """Class 0 uses tokens ``2 .. 2+vocab``, class 1 the same shifted by 50."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    low = torch.randint(2, 2 + vocab, (n, seq), generator=g)
    ids = torch.where(labels.unsqueeze(1) == 1, low + 50, low)
    return TensorDataset(ids, torch.ones(n, seq, dtype=torch.long), labels)


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _frozen(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


def _train(module: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> int:
    steps = 0
    for ids, mask, labels in loader:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(module(ids, mask), labels)
        loss.backward()
        optimizer.step()
        steps += 1
    return steps


def test_only_lora_and_head_are_trainable() -> None:
    names = _trainable(TinyClassifier())
    assert names and all("lora_" in n or n.startswith("head.") for n in names)
    assert any("lora_A" in n for n in names) and "head.weight" in names


@pytest.mark.parametrize("grad_sample_mode", ["hooks", "functorch"])
def test_private_steps_update_only_lora_and_head_and_charge_ledger(grad_sample_mode: str) -> None:
    torch.manual_seed(0)
    model = TinyClassifier()
    frozen_before, trainable_before = _frozen(model), _trainable(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    private = make_private(
        model,
        optimizer,
        DataLoader(_data(), batch_size=16),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        grad_sample_mode=grad_sample_mode,
        noise=NoiseSource.seeded(0),
    )
    module, dp_optimizer, loader, z, q = private
    assert (z, q) == (1.0, 0.25)
    steps = _train(module, dp_optimizer, loader)
    assert steps == 4

    for name, before in frozen_before.items():
        assert torch.equal(dict(model.named_parameters())[name], before), name
    changed = {
        n
        for n, b in trainable_before.items()
        if not torch.equal(dict(model.named_parameters())[n], b)
    }
    assert changed == set(trainable_before)

    ledger = PrivacyLedger("c", delta=DELTA, budget=8.0)
    spent = ledger.charge(noise_multiplier=z, sample_rate=q, steps=steps, kind="dpsgd")
    assert spent == pytest.approx(compute_epsilon([(1.0, 0.25, 4)], delta=DELTA))


def test_target_epsilon_calibrates_to_ledger() -> None:
    model = TinyClassifier()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    private = make_private(
        model,
        optimizer,
        DataLoader(_data(), batch_size=8),
        target_epsilon=3.0,
        target_delta=DELTA,
        epochs=2,
        max_grad_norm=1.0,
    )
    assert private.sample_rate == 1 / 8
    spent = compute_epsilon([(private.noise_multiplier, private.sample_rate, 16)], delta=DELTA)
    assert 3.0 - 0.01 <= spent <= 3.0


def test_without_noise_or_clipping_a_step_equals_plain_sgd() -> None:
    """Checks opacus's per-example gradients on the LoRA model average to the true gradient."""
    data = _data(n=16)
    plain = TinyClassifier().double()
    private_model = copy.deepcopy(plain)
    before = _trainable(plain)
    ids, mask, labels = data.tensors
    sgd = torch.optim.SGD([p for p in plain.parameters() if p.requires_grad], lr=0.5)
    sgd.zero_grad()
    nn.functional.cross_entropy(plain(ids, mask), labels).backward()
    sgd.step()

    optimizer = torch.optim.SGD([p for p in private_model.parameters() if p.requires_grad], lr=0.5)
    module, dp_optimizer, loader, _, _ = make_private(
        private_model,
        optimizer,
        DataLoader(data, batch_size=16),
        noise_multiplier=0.0,
        max_grad_norm=1e6,
        poisson_sampling=False,
    )
    assert _train(module, dp_optimizer, loader) == 1
    expected = _trainable(plain)
    for name, value in _trainable(private_model).items():
        assert not torch.equal(expected[name], before[name]), name
        torch.testing.assert_close(
            value - before[name], expected[name] - before[name], rtol=1e-8, atol=1e-10
        )


def test_per_example_clipping_bounds_the_step() -> None:
    model = TinyClassifier()
    before = _trainable(model)
    lr, clip = 1.0, 1e-3
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    module, dp_optimizer, loader, _, _ = make_private(
        model,
        optimizer,
        DataLoader(_data(n=16), batch_size=16),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        poisson_sampling=False,
    )
    _train(module, dp_optimizer, loader)
    after = _trainable(model)
    step = tree_norm({n: after[n] - before[n] for n in before})
    assert 0 < step <= lr * clip * (1 + 1e-4)  # mean of clipped gradients


def test_dpsgd_learns_separable_task() -> None:
    """CPU smoke run: a few noisy epochs take held-out accuracy from chance to > 0.9."""
    torch.manual_seed(1)
    model = TinyClassifier(seed=1)
    ids, mask, labels = _data(n=200, seed=2, vocab=4).tensors

    def accuracy() -> float:
        with torch.no_grad():
            return (model(ids, mask).argmax(dim=1) == labels).float().mean().item()

    assert accuracy() < 0.7
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    module, dp_optimizer, loader, _, _ = make_private(
        model,
        optimizer,
        DataLoader(_data(n=128, seed=1, vocab=4), batch_size=16),
        noise_multiplier=0.5,
        max_grad_norm=1.0,
        noise=NoiseSource.seeded(1),
    )
    for _ in range(3):
        _train(module, dp_optimizer, loader)
    assert accuracy() > 0.9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of noise_multiplier and target_epsilon"),
        ({"noise_multiplier": 1.0, "target_epsilon": 1.0}, "exactly one"),
        ({"target_epsilon": 1.0, "epochs": 1}, "target_delta"),
        ({"target_epsilon": 1.0, "target_delta": DELTA}, "epochs and steps"),
        ({"noise_multiplier": 1.0, "grad_sample_mode": "ghost"}, "grad_sample_mode"),
        ({"noise_multiplier": -1.0}, "noise_multiplier"),
    ],
)
def test_make_private_validation(kwargs: dict[str, object], match: str) -> None:
    model = TinyClassifier()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with pytest.raises(ValueError, match=match):
        make_private(
            model,
            optimizer,
            DataLoader(_data(), batch_size=8),
            max_grad_norm=1.0,
            **kwargs,  # type: ignore[arg-type]
        )


def _poisson_epochs(private, epochs: int) -> tuple[int, int, dict[str, torch.Tensor]]:
    """Train ``epochs`` passes; return (steps, empty steps, trainable state before the
    first empty step's update and after it, keyed ``before:``/``after:``)."""
    from fednet.privacy.dpsgd import step_empty_batch

    module, dp_optimizer, loader = private.module, private.optimizer, private.data_loader
    steps = empties = 0
    around: dict[str, torch.Tensor] = {}
    for _ in range(epochs):
        for ids, mask, labels in loader:
            dp_optimizer.zero_grad()
            if len(labels) == 0:
                if not around:
                    around.update({f"before:{n}": t for n, t in _trainable(module).items()})
                step_empty_batch(dp_optimizer)
                if len(around) == len(_trainable(module)):
                    around.update({f"after:{n}": t for n, t in _trainable(module).items()})
                empties += 1
            else:
                nn.functional.cross_entropy(module(ids, mask), labels).backward()
                dp_optimizer.step()
            steps += 1
    return steps, empties, around


def test_empty_poisson_batch_is_counted_by_the_accountant() -> None:
    from opacus.accountants import RDPAccountant

    # 3 examples, batch 1: q = 1/3 and each Poisson batch is empty with probability (2/3)^3
    model = TinyClassifier()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    private = make_private(
        model,
        optimizer,
        DataLoader(_data(n=3), batch_size=1),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        noise=NoiseSource.seeded(0),
    )
    accountant = RDPAccountant()
    private.optimizer.attach_step_hook(
        accountant.get_optimizer_hook_fn(sample_rate=private.sample_rate)
    )
    steps, empties, _ = _poisson_epochs(private, epochs=6)
    assert steps == 18 and empties > 0
    want = compute_epsilon([(1.0, 1 / 3, 18)], delta=DELTA)
    assert accountant.get_epsilon(delta=DELTA) == pytest.approx(want, rel=1e-6)


def test_empty_poisson_batch_adds_only_noise() -> None:
    # without noise, the step of an empty batch leaves every parameter as it was
    model = TinyClassifier()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    private = make_private(
        model,
        optimizer,
        DataLoader(_data(n=3), batch_size=1),
        noise_multiplier=0.0,
        max_grad_norm=1.0,
        noise=NoiseSource.seeded(0),
    )
    steps, empties, around = _poisson_epochs(private, epochs=6)
    assert steps == 18 and empties > 0
    names = [k.removeprefix("before:") for k in around if k.startswith("before:")]
    assert names
    for name in names:
        assert torch.equal(around[f"before:{name}"], around[f"after:{name}"]), name


def test_gradient_noise_and_batches_are_fresh_unless_seeded() -> None:
    """Everything public identical (weights, data, torch's global seed): two DP-SGD runs
    still differ, because noise and Poisson batches come from OS entropy."""
    from fednet.privacy import PoissonBatchSampler

    def train(noise: NoiseSource | None) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = TinyClassifier()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        module, dp_opt, loader, _, _ = make_private(
            model,
            opt,
            DataLoader(_data(), batch_size=16),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            noise=noise,
        )
        assert isinstance(loader.batch_sampler, PoissonBatchSampler)
        _train(module, dp_opt, loader)
        return _trainable(model)

    a, b = train(None), train(None)
    assert all(not torch.equal(a[k], b[k]) for k in a)
    c, d = train(NoiseSource.seeded(3)), train(NoiseSource.seeded(3))
    assert all(torch.equal(c[k], d[k]) for k in c)


def test_expected_batch_size_survives_floating_point() -> None:
    # int(49 * (1 / 49)) == 0 in floating point: opacus would divide the gradient by zero
    model = TinyClassifier()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    private = make_private(
        model,
        optimizer,
        DataLoader(_data(n=49), batch_size=1),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        noise=NoiseSource.seeded(0),
    )
    assert private.optimizer.expected_batch_size == 1
    _poisson_epochs(private, epochs=1)
    assert all(torch.isfinite(t).all() for t in _trainable(model).values())
