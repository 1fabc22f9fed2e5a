"""Typed configuration of a client's privacy: budget, sketches, update DP and DP-SGD."""

from __future__ import annotations

import math
from typing import Annotated, Literal, get_args

from pydantic import field_validator, model_validator

from fednet.config_base import (
    Bool,
    Finite,
    Float,
    Int,
    Str,
    bound,
    config_model,
    expected,
    problems,
)

__all__ = ["UPDATE_MODES", "PrivacyConfig"]

UpdateMode = Literal["none", "central", "local"]
UPDATE_MODES: tuple[str, ...] = get_args(UpdateMode)
"""``none``: updates leave unnoised; ``central``: the server clips and noises the
average; ``local``: each client clips and noises its own update."""


@config_model("privacy")
class PrivacyConfig:
    """Privacy settings of one client, read from the ``[privacy]`` table.

    TOML keys are the kebab-case forms of the field names
    (``epsilon-budget`` -> ``epsilon_budget``); Python code may use either.

    Parameters
    ----------
    enabled : bool
        Turn privacy on; when off the other fields are still validated.
    epsilon_budget : float
        Total ε each client may spend over the whole federation; ``math.inf``
        means no budget.
    delta : float
        δ at which every ε is reported, in (0, 1).
    sketch_epsilon : float
        ε of one capability-sketch release.
    sketch_clip : float
        L2 bound ``C`` on each embedding before it enters a sketch.
    update_mode : str
        One of :data:`UPDATE_MODES`.
    update_clip : float
        L2 bound ``C_u`` on a whole client update.
    update_noise_multiplier : float
        ``z`` of the update mechanism: noise std ``2 * z * C_u`` (local: one client's
        clipped update has sensitivity ``2 * C_u``) or
        ``z * C_u / n`` on the average of ``n`` updates (central).
    dpsgd : bool
        Train with DP-SGD.
    dpsgd_epsilon : float or None
        Target ε of one client's whole DP-SGD training; the noise multiplier is
        derived from it. Exactly one of this and ``dpsgd_noise_multiplier`` is
        set when ``dpsgd`` is on.
    dpsgd_noise_multiplier : float or None
        Noise multiplier of DP-SGD, given directly.
    dpsgd_max_grad_norm : float
        Per-example gradient clipping bound of DP-SGD.
    dpsgd_sample_rate : float or None
        ``q`` of DP-SGD, in (0, 1]: each step takes each training example with
        probability ``q`` (Poisson sampling), and the ledger charges ``q``.
        Required with ``enabled`` and ``dpsgd``. It is a public setting on
        purpose: a rate derived from the data (``batch-size / n``) would make
        the released ε a function of the client's number of examples ``n``,
        which the protocol withholds. Each step's summed, noised gradient is
        divided by the client's ``batch-size``, also public; pick ``q`` near
        ``batch-size / n`` for the usual step size.
    accountant : str
        Registered accountant name.
    sketch_examples : int
        At most this many training examples (a secret random sample) enter a sketch.
    reproducible_noise : bool
        For tests only: draw every noise sample and sampling decision from
        generators seeded from the preset, so that runs repeat exactly. Anyone
        holding the preset can then regenerate and subtract the noise, so a run
        with it on reports "epsilon not valid: reproducible noise" beside every ε
        (:data:`fednet.privacy.randomness.NOT_VALID_NOTE`).
    """

    enabled: Bool = False
    epsilon_budget: Annotated[Float, *bound("> 0")] = 8.0
    delta: Annotated[Finite, *bound("in (0, 1)")] = 1e-5
    sketch_epsilon: Annotated[Finite, *bound("> 0")] = 1.0
    sketch_clip: Annotated[Finite, *bound("> 0")] = 1.0
    update_mode: UpdateMode = "none"
    update_clip: Annotated[Finite, *bound("> 0")] = 1.0
    update_noise_multiplier: Annotated[Finite, *bound(">= 0")] = 0.0
    dpsgd: Bool = False
    dpsgd_epsilon: Annotated[Finite, *bound("> 0")] | None = None
    dpsgd_noise_multiplier: Annotated[Finite, *bound(">= 0")] | None = None
    dpsgd_max_grad_norm: Annotated[Finite, *bound("> 0")] = 1.0
    dpsgd_sample_rate: Annotated[Finite, *bound("in (0, 1]")] | None = None
    accountant: Str = "rdp"
    sketch_examples: Annotated[Int, *bound(">= 1")] = 512
    reproducible_noise: Bool = False

    @field_validator("accountant")
    @classmethod
    def _accountant(cls, value: str) -> str:
        if value == "rdp":
            return value
        from fednet.privacy.accountant import available_accountants  # loads opacus

        if value not in available_accountants():
            raise expected("one of " + ", ".join(repr(a) for a in available_accountants()))
        return value

    @model_validator(mode="after")
    def _cross(self) -> PrivacyConfig:
        found: list[tuple[tuple[str, ...], str]] = []
        if self.dpsgd and (self.dpsgd_epsilon is None) == (self.dpsgd_noise_multiplier is None):
            found.append(
                (
                    (),
                    "with `privacy.dpsgd` on, set exactly one of `privacy.dpsgd-epsilon` and "
                    f"`privacy.dpsgd-noise-multiplier`; got {self.dpsgd_epsilon!r} and "
                    f"{self.dpsgd_noise_multiplier!r}",
                )
            )
        if self.enabled and self.dpsgd and self.dpsgd_sample_rate is None:
            found.append(
                (
                    ("dpsgd_sample_rate",),
                    "must be set with `privacy.dpsgd` on: DP-SGD's sampling rate must be a "
                    "public setting, since a rate derived from the data (batch-size / n) "
                    "makes the released epsilon reveal the client's number of examples",
                )
            )
        for name in ("sketch_epsilon", "dpsgd_epsilon"):
            value = getattr(self, name)
            if self.enabled and value is not None and value > self.epsilon_budget:
                found.append(
                    (
                        (name,),
                        f"must not exceed `privacy.epsilon-budget` ({self.epsilon_budget!r}), "
                        f"got {value!r}",
                    )
                )
        if (
            self.enabled
            and self.update_mode == "local"
            and self.update_noise_multiplier == 0
            and not math.isinf(self.epsilon_budget)
        ):
            found.append(
                (
                    ("update_noise_multiplier",),
                    "must be > 0 when `privacy.update-mode` is 'local' under a finite budget, "
                    f"got {self.update_noise_multiplier!r}",
                )
            )
        error = problems(found)
        if error is not None:
            raise error
        return self
