"""Typed configuration of a client's privacy: budget, sketches, update DP and DP-SGD."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fednet.privacy._checks import check_delta, check_non_negative, check_positive

__all__ = ["UPDATE_MODES", "PrivacyConfig"]

UPDATE_MODES: tuple[str, ...] = ("none", "central", "local")
"""``none``: updates leave unnoised; ``central``: the server clips and noises the
average; ``local``: each client clips and noises its own update."""


def _key(name: str) -> str:
    return "`privacy." + name.replace("_", "-") + "`"


@dataclass(frozen=True)
class PrivacyConfig:
    """Privacy settings of one client, read from the ``[privacy]`` table.

    TOML keys are the kebab-case forms of the field names
    (``epsilon-budget`` -> ``epsilon_budget``); :mod:`fednet.config` maps them.

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
        ``z`` of the update mechanism: noise std ``z * C_u`` (local) or
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

    enabled: bool = False
    epsilon_budget: float = 8.0
    delta: float = 1e-5
    sketch_epsilon: float = 1.0
    sketch_clip: float = 1.0
    update_mode: str = "none"
    update_clip: float = 1.0
    update_noise_multiplier: float = 0.0
    dpsgd: bool = False
    dpsgd_epsilon: float | None = None
    dpsgd_noise_multiplier: float | None = None
    dpsgd_max_grad_norm: float = 1.0
    accountant: str = "rdp"
    sketch_examples: int = 512
    reproducible_noise: bool = False

    def __post_init__(self) -> None:
        for name in ("enabled", "dpsgd", "reproducible_noise"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{_key(name)} must be a bool, got {getattr(self, name)!r}")
        numbers = {
            "epsilon_budget": check_positive(
                _key("epsilon_budget"), self.epsilon_budget, allow_inf=True
            ),
            "delta": check_delta(_key("delta"), self.delta),
            "sketch_epsilon": check_positive(_key("sketch_epsilon"), self.sketch_epsilon),
            "sketch_clip": check_positive(_key("sketch_clip"), self.sketch_clip),
            "update_clip": check_positive(_key("update_clip"), self.update_clip),
            "update_noise_multiplier": check_non_negative(
                _key("update_noise_multiplier"), self.update_noise_multiplier
            ),
            "dpsgd_max_grad_norm": check_positive(
                _key("dpsgd_max_grad_norm"), self.dpsgd_max_grad_norm
            ),
        }
        if self.dpsgd_epsilon is not None:
            numbers["dpsgd_epsilon"] = check_positive(_key("dpsgd_epsilon"), self.dpsgd_epsilon)
        if self.dpsgd_noise_multiplier is not None:
            numbers["dpsgd_noise_multiplier"] = check_non_negative(
                _key("dpsgd_noise_multiplier"), self.dpsgd_noise_multiplier
            )
        for name, value in numbers.items():  # ints from TOML become floats
            object.__setattr__(self, name, value)

        if isinstance(self.sketch_examples, bool) or self.sketch_examples < 1:
            raise ValueError(
                f"{_key('sketch_examples')} must be >= 1, got {self.sketch_examples!r}"
            )
        if self.update_mode not in UPDATE_MODES:
            raise ValueError(
                f"{_key('update_mode')} must be one of {', '.join(UPDATE_MODES)}; "
                f"got {self.update_mode!r}"
            )
        if self.accountant != "rdp":
            from fednet.privacy.accountant import available_accountants  # loads opacus
        else:

            def available_accountants() -> list[str]:
                return ["rdp"]

        if self.accountant not in available_accountants():
            raise ValueError(
                f"{_key('accountant')} must be one of {', '.join(available_accountants())}; "
                f"got {self.accountant!r}"
            )
        if self.dpsgd and (self.dpsgd_epsilon is None) == (self.dpsgd_noise_multiplier is None):
            raise ValueError(
                f"with {_key('dpsgd')} on, set exactly one of {_key('dpsgd_epsilon')} and "
                f"{_key('dpsgd_noise_multiplier')}; got {self.dpsgd_epsilon!r} and "
                f"{self.dpsgd_noise_multiplier!r}"
            )
        for name in ("sketch_epsilon", "dpsgd_epsilon"):
            value = getattr(self, name)
            if self.enabled and value is not None and value > self.epsilon_budget:
                raise ValueError(
                    f"{_key(name)} must not exceed {_key('epsilon_budget')} "
                    f"({self.epsilon_budget!r}), got {value!r}"
                )
        if (
            self.enabled
            and self.update_mode == "local"
            and self.update_noise_multiplier == 0
            and not math.isinf(self.epsilon_budget)
        ):
            raise ValueError(
                f"{_key('update_noise_multiplier')} must be > 0 when {_key('update_mode')} is "
                f"'local' under a finite budget, got {self.update_noise_multiplier!r}"
            )
