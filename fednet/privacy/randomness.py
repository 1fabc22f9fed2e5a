"""Where DP noise and DP sampling come from: the operating system's CSPRNG.

Every Gaussian noise draw and every Poisson sampling decision of a DP mechanism
in fednet (local update noise, DP-SGD noise and batch sampling, sketch noise,
the server's central-DP noise and its client sampling) goes through a
:class:`NoiseSource`. The adversary fednet designs for knows the preset, the
code and everything released, so the noise must not be derivable from any of
them: a generator seeded from the preset's ``seed`` lets anyone regenerate the
noise and subtract it (``tests/privacy/test_replay_attack.py`` plays that attack).

The choice, and why
-------------------
- **Bits from ``os.urandom``.** The kernel's CSPRNG (``getrandom(2)``) is the
  one cryptographically secure source available on every platform fednet runs
  on. A ``torch.Generator`` or numpy ``PCG64``/``SFC64`` seeded *from* OS
  entropy is not enough: they are not cryptographically secure, and their
  state can be recovered from enough outputs. Opacus's ``secure_mode`` would
  do this through ``torchcsprng``, which has no release for torch 2.x (it is
  not installable next to fednet's torch), so fednet generates the samples
  itself.
- **Uniforms.** 64 random bits give ``(k + 0.5) / 2**53`` with ``k`` the top 53
  bits: a float64 in the open interval (0, 1).
- **Gaussians.** Box-Muller (Box & Muller, 1958) on pairs of uniforms, in
  float64 and vectorised with numpy. Floating-point Gaussian samplers leak
  through the gaps between representable values (Mironov, CCS 2012; Jin et
  al., https://arxiv.org/abs/2112.05307); following Holohan & Braghin,
  "Secure Random Sampling in Differential Privacy"
  (https://arxiv.org/abs/2107.10138), section 5.1, each sample is the sum of
  four standard normals divided by two, as opacus's ``secure_mode`` does.
- **Poisson sampling.** Each element is taken with probability ``q`` when its
  secure uniform is below ``q``.

Secure bits cost about 32 bytes of OS entropy per Gaussian sample; a LoRA
update or a DP-SGD step of a small encoder needs well under a megabyte.

Nothing here is seeded from the preset, logged, or checkpointed: a secure
source has no state to save. :meth:`NoiseSource.seeded` exists for tests only
and is reached from a run solely through ``privacy.reproducible-noise = true``;
such a run marks its summary and every manifest with :data:`NOT_VALID_NOTE`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = [
    "NOT_VALID_NOTE",
    "NoiseSource",
    "PoissonBatchSampler",
    "derive_seed",
    "noise_source",
    "secure_source",
]

NOT_VALID_NOTE = "epsilon not valid: reproducible noise"
"""What a run with ``privacy.reproducible-noise = true`` writes beside every ε."""

_TWO_PI = 2.0 * math.pi
_INV_2_53 = 1.0 / float(1 << 53)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (for the test-only reproducible noise).

    Anyone who knows the parts knows the seed: that is the point of
    reproducible noise, and why it voids every ε it touches.
    """
    text = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


class NoiseSource:
    """Gaussian noise, uniforms and Poisson sampling for DP mechanisms.

    Build one with :func:`secure_source` (OS entropy, the default everywhere)
    or :meth:`seeded` (tests only).

    Parameters
    ----------
    seed : int or None
        ``None`` draws every bit from ``os.urandom``. An int seeds a
        ``torch.Generator``: reproducible, hence not private.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self._generator = None if seed is None else torch.Generator().manual_seed(seed)

    @classmethod
    def seeded(cls, seed: int) -> NoiseSource:
        """A reproducible source, for tests; its noise gives no privacy."""
        return cls(seed=seed)

    @property
    def reproducible(self) -> bool:
        """Whether the draws can be regenerated from a seed (never in a private run)."""
        return self._generator is not None

    def __repr__(self) -> str:
        return f"NoiseSource({'seeded' if self.reproducible else 'os.urandom'})"

    def __deepcopy__(self, memo: dict[int, object]) -> NoiseSource:
        return self  # never duplicate a stream (a copy of a seeded one would repeat it)

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a NoiseSource is never pickled or checkpointed")

    # -- draws -------------------------------------------------------------------
    def uniform(self, n: int) -> np.ndarray:
        """``n`` float64 uniforms in the open interval (0, 1)."""
        _check_count("n", n)
        if self._generator is not None:
            u = torch.rand(n, generator=self._generator, dtype=torch.float64).numpy()
            return np.clip(u, _INV_2_53 / 2, 1.0 - _INV_2_53 / 2)
        words = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
        return ((words >> np.uint64(11)).astype(np.float64) + 0.5) * _INV_2_53

    def standard_normal(self, n: int) -> np.ndarray:
        """``n`` float64 samples of N(0, 1) (see the module notes)."""
        _check_count("n", n)
        if self._generator is not None:
            return torch.randn(n, generator=self._generator, dtype=torch.float64).numpy()
        # sum of four Box-Muller normals, divided by two (Holohan & Braghin, sec. 5.1)
        pairs = 2 * n  # 4n normals from 2n pairs
        u = self.uniform(2 * pairs).reshape(2, pairs)
        r = np.sqrt(-2.0 * np.log(u[0]))
        theta = _TWO_PI * u[1]
        normals = np.concatenate([r * np.cos(theta), r * np.sin(theta)])
        return normals.reshape(4, n).sum(axis=0) / 2.0

    def normal(
        self,
        shape: Sequence[int] | torch.Size,
        *,
        std: float,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """A tensor of N(0, std²) samples with the given shape, dtype and device."""
        size = tuple(int(s) for s in shape)
        n = math.prod(size)
        if std == 0 or n == 0:
            return torch.zeros(size, dtype=dtype, device=device)
        samples = torch.from_numpy(self.standard_normal(n) * float(std))
        return samples.reshape(size).to(dtype=dtype, device=device)

    def bernoulli(self, n: int, p: float) -> np.ndarray:
        """``n`` independent booleans, each true with probability ``p``."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        return self.uniform(n) < p

    def permutation(self, n: int) -> np.ndarray:
        """A uniformly random permutation of ``range(n)`` (argsort of uniforms)."""
        return np.argsort(self.uniform(n), kind="stable")


def secure_source() -> NoiseSource:
    """A :class:`NoiseSource` drawing every bit from ``os.urandom``."""
    return NoiseSource()


def noise_source(*, reproducible: bool, parts: Sequence[object] = ()) -> NoiseSource:
    """The source a mechanism uses: OS entropy, or (tests only) seeded from ``parts``.

    ``reproducible`` is ``privacy.reproducible-noise``; ``parts`` name the
    mechanism (preset seed, client, purpose, round) so that seeded streams of
    different mechanisms differ.
    """
    if reproducible:
        return NoiseSource.seeded(derive_seed(*parts))
    return secure_source()


def _check_count(key: str, n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"{key} must be an int >= 0, got {n!r}")


class PoissonBatchSampler(Sampler[list[int]]):
    """Poisson sampling for DP-SGD: every example joins a batch with probability ``q``.

    The batch sampler the accountant's sampled Gaussian mechanism assumes
    (opacus's ``UniformWithReplacementSampler``), with its decisions drawn from
    a :class:`NoiseSource`. Batches vary in size and may be empty.

    Parameters
    ----------
    num_samples : int
        Number of examples.
    sample_rate : float
        ``q`` in (0, 1].
    noise : NoiseSource
        Where the decisions come from.
    steps : int, optional
        Batches per pass; ``int(1 / q)`` by default, as in opacus.
    """

    def __init__(
        self, *, num_samples: int, sample_rate: float, noise: NoiseSource, steps: int | None = None
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples!r}")
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        self.num_samples = int(num_samples)
        self.sample_rate = float(sample_rate)
        self.noise = noise
        self.steps = int(1 / sample_rate) if steps is None else int(steps)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = self.noise.bernoulli(self.num_samples, self.sample_rate)
            yield np.flatnonzero(mask).tolist()
