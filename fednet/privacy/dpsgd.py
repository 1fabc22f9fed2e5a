"""DP-SGD for LoRA fine-tuning, through opacus.

Implementation based on Abadi et al., "Deep Learning with Differential Privacy"
(https://arxiv.org/abs/1607.00133), as implemented by opacus's ``PrivacyEngine``.

Works on a frozen transformer encoder with peft LoRA adapters plus a linear
head, wrapped in one ``nn.Module`` whose ``forward(input_ids, attention_mask)``
returns logits. Only parameters with ``requires_grad`` (the LoRA matrices and
the head) get per-example gradients; frozen embeddings, attention and
LayerNorm weights are skipped by opacus, so its ``"hooks"`` mode (the default)
handles a peft-wrapped ``BertModel``; ``"functorch"`` works as well. Torch
warns that a full backward hook fires "since no inputs require gradients":
expected, because the first trainable layer sits behind frozen embeddings.

The returned noise multiplier and sample rate are what the client's ledger is
charged with: ``ledger.charge(noise_multiplier=z, sample_rate=q, steps=s,
kind="dpsgd")`` for ``s`` optimizer steps. Charging the planned steps before
training means a refused charge stops the client before it touches its data.

The gradient noise and the Poisson batch sampling both come from a
:class:`~fednet.privacy.randomness.NoiseSource` (OS entropy unless a test
passes a seeded one), never from a ``torch.Generator``: a generator seeded
from the preset would let anyone regenerate the noise and the batches.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from opacus import PrivacyEngine
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.utils.data import DataLoader

from fednet.privacy._checks import check_non_negative, check_positive
from fednet.privacy.mechanisms import calibrate_noise_multiplier
from fednet.privacy.randomness import NoiseSource, PoissonBatchSampler, secure_source

__all__ = ["GRAD_SAMPLE_MODES", "PrivateTraining", "make_private", "step_empty_batch"]

logger = logging.getLogger(__name__)

GRAD_SAMPLE_MODES: tuple[str, ...] = ("hooks", "functorch")
"""Opacus per-example gradient modes supported here (both tested on peft-LoRA BERT)."""


class PrivateTraining(NamedTuple):
    """What :func:`make_private` returns; unpacks as a 5-tuple."""

    module: nn.Module
    """The module wrapped by opacus to compute per-example gradients; train this one."""
    optimizer: torch.optim.Optimizer
    """A ``DPOptimizer``: clips per-example gradients and adds noise in ``step()``."""
    data_loader: DataLoader
    """Poisson-sampled loader when ``poisson_sampling`` is on (batches vary in size)."""
    noise_multiplier: float
    """``z``: noise std over ``max_grad_norm``."""
    sample_rate: float
    """``q = 1 / len(data_loader)``."""


def make_private(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader,
    *,
    max_grad_norm: float,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    target_delta: float | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    poisson_sampling: bool = True,
    grad_sample_mode: str = "hooks",
    noise: NoiseSource | None = None,
    sample_rate: float | None = None,
    expected_batch_size: int | None = None,
) -> PrivateTraining:
    """Wrap a model, optimizer and loader for DP-SGD.

    Give either ``noise_multiplier``, or ``target_epsilon`` with ``target_delta``
    and exactly one of ``epochs`` and ``steps``; the noise multiplier is then
    calibrated with the same accountant as the ledger, for ``q = 1 /
    len(data_loader)`` over ``steps`` (or ``epochs * len(data_loader)``) steps.

    Parameters
    ----------
    module : nn.Module
        Model whose trainable parameters are exactly those to fine-tune.
    optimizer : torch.optim.Optimizer
        Optimizer over (a subset of) ``module``'s trainable parameters.
    data_loader : DataLoader
        Loader of the client's private examples.
    max_grad_norm : float
        Per-example gradient clipping bound.
    noise_multiplier : float, optional
        ``z`` given directly (``>= 0``; 0 means no privacy).
    target_epsilon, target_delta : float, optional
        Target (ε, δ) of the whole training.
    epochs, steps : int, optional
        Planned length of training when calibrating from ``target_epsilon``.
    poisson_sampling : bool
        Sample batches by Poisson sampling, as the accountant assumes.
    grad_sample_mode : str
        One of :data:`GRAD_SAMPLE_MODES`.
    noise : NoiseSource, optional
        Source of the gradient noise and of the Poisson sampling; OS entropy
        by default. A seeded source is for tests only.
    sample_rate : float, optional
        ``q`` of the Poisson sampling, in (0, 1], given as a public setting
        (``privacy.dpsgd-sample-rate``); default ``1 / len(data_loader)``,
        which depends on the number of examples.
    expected_batch_size : int, optional
        What each step's summed, noised gradient is divided by; default
        ``round(q * n)``. Give a public number (the client's ``batch-size``)
        so that the released step does not scale with ``n``.

    Returns
    -------
    PrivateTraining
        ``(module, optimizer, data_loader, noise_multiplier, sample_rate)``.
    """
    bound = check_positive("max_grad_norm", max_grad_norm)
    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ValueError(
            f"grad_sample_mode must be one of {', '.join(GRAD_SAMPLE_MODES)}; "
            f"got {grad_sample_mode!r}"
        )
    trainable = [name for name, p in module.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("module has no parameter with requires_grad=True to train")
    if len(data_loader) < 1:
        raise ValueError("data_loader must yield at least one batch")
    if sample_rate is None:
        sample_rate = 1.0 / len(data_loader)
    elif not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    z = _resolve_noise_multiplier(
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        target_delta=target_delta,
        epochs=epochs,
        steps=steps,
        sample_rate=sample_rate,
        num_batches=len(data_loader),
    )
    source = secure_source() if noise is None else noise
    if poisson_sampling:
        data_loader = _poisson_loader(data_loader, source, sample_rate)
    engine = PrivacyEngine(accountant="rdp")
    private_module, private_optimizer, private_loader = engine.make_private(
        module=module,
        optimizer=optimizer,
        data_loader=data_loader,
        noise_multiplier=z,
        max_grad_norm=bound,
        poisson_sampling=False,  # done above, from the noise source
        grad_sample_mode=grad_sample_mode,
    )
    # opacus takes the expected batch size as int(n * (1 / len(loader))), which floating
    # point rounds down to 0 for some n (49 examples in batches of 1): the mean gradient
    # would then be divided by zero. q * n, rounded, is what it means.
    private_optimizer.expected_batch_size = (
        check_positive("expected_batch_size", expected_batch_size)
        if expected_batch_size is not None
        else max(1, round(len(data_loader.dataset) * sample_rate))  # type: ignore[arg-type]
    )
    _draw_noise_from(private_optimizer, source)
    logger.info(
        "DP-SGD on %d trainable tensors: noise multiplier %.4g, sample rate %.4g, clip %g",
        len(trainable),
        z,
        sample_rate,
        bound,
    )
    return PrivateTraining(private_module, private_optimizer, private_loader, z, sample_rate)


def step_empty_batch(optimizer: DPOptimizer) -> None:
    """Take the DP-SGD step of an empty Poisson batch.

    Poisson sampling draws an empty batch with probability ``(1 - q) ** n``. The
    accountant assumes such a step still happens: the sum of clipped gradients
    is zero and the released gradient is the Gaussian noise alone. A model may
    not run on zero examples (BERT cannot reshape a batch of none), so this
    hands the optimizer the zero-length per-example gradients opacus's own
    empty-batch path expects (``DPOptimizer.clip_and_accumulate``), then steps:
    no example moves the parameters, the noise does (not at all when ``z = 0``),
    and the optimizer's step hook counts the step for the accountant.

    Parameters
    ----------
    optimizer : DPOptimizer
        The optimizer returned by :func:`make_private`, after ``zero_grad()``.
    """
    for p in optimizer.params:
        p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
    optimizer.step()


def _poisson_loader(data_loader: DataLoader, noise: NoiseSource, sample_rate: float) -> DataLoader:
    """``data_loader``'s data set behind Poisson sampling at ``sample_rate``, with
    opacus's collation of empty batches."""
    from opacus.data_loader import dtype_safe, shape_safe, wrap_collate_with_empty
    from torch.utils.data._utils.collate import default_collate

    dataset = data_loader.dataset
    first = dataset[0]
    sampler = PoissonBatchSampler(
        num_samples=len(dataset),  # type: ignore[arg-type]
        sample_rate=sample_rate,
        noise=noise,
    )
    collate = wrap_collate_with_empty(
        collate_fn=data_loader.collate_fn or default_collate,
        sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
        dtypes=[dtype_safe(x) for x in first],
    )
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)


def _draw_noise_from(optimizer: torch.optim.Optimizer, noise: NoiseSource) -> None:
    """Make a ``DPOptimizer`` draw its Gaussian noise from ``noise``.

    The replacement does what opacus's ``DPOptimizer.add_noise`` does (std
    ``noise_multiplier * max_grad_norm`` on each summed clipped gradient), with
    the samples from ``noise`` instead of a ``torch.Generator``.
    """
    from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

    def add_noise() -> None:
        std = optimizer.noise_multiplier * optimizer.max_grad_norm  # type: ignore[attr-defined]
        for p in optimizer.params:  # type: ignore[attr-defined]
            _check_processed_flag(p.summed_grad)
            summed = p.summed_grad
            drawn = noise.normal(summed.shape, std=std, dtype=summed.dtype, device=summed.device)
            p.grad = (summed + drawn).view_as(p)
            _mark_as_processed(p.summed_grad)

    optimizer.add_noise = add_noise  # type: ignore[attr-defined]


def _resolve_noise_multiplier(
    *,
    noise_multiplier: float | None,
    target_epsilon: float | None,
    target_delta: float | None,
    epochs: int | None,
    steps: int | None,
    sample_rate: float,
    num_batches: int,
) -> float:
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ValueError(
            "give exactly one of noise_multiplier and target_epsilon, got "
            f"noise_multiplier={noise_multiplier!r}, target_epsilon={target_epsilon!r}"
        )
    if target_epsilon is None:
        return check_non_negative("noise_multiplier", noise_multiplier)
    if target_delta is None:
        raise ValueError("target_delta is required with target_epsilon")
    for key, value in (("epochs", epochs), ("steps", steps)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{key} must be an int >= 1, got {value!r}")
    if steps is not None and epochs is None:
        total = steps
    elif epochs is not None and steps is None:
        total = epochs * num_batches
    else:
        raise ValueError(
            f"with target_epsilon give exactly one of epochs and steps, got "
            f"epochs={epochs!r}, steps={steps!r}"
        )
    return calibrate_noise_multiplier(
        epsilon=target_epsilon, delta=target_delta, sample_rate=sample_rate, steps=total
    )
