"""Maps from one base model's pooled embedding space into the network space.

Every map is fitted on paired embeddings ``(x_i, y_i)`` of the same public text
``i`` under the source encoder and under the network space's encoder (see
:mod:`fednet.representation.space`). Methods:

- ``procrustes``: scaled orthogonal Procrustes on centred embeddings,
  ``y = s (x - mu_x) W + mu_y`` with ``W = U V^T`` from the SVD of
  ``Xc^T Yc`` (Schönemann 1966); semi-orthogonal when the dimensions differ.
  The linear alignment used for cross-lingual word vectors (Smith et al.,
  ICLR 2017; Conneau et al., ICLR 2018).
- ``ridge``: least squares with an L2 penalty, ``W = (Xc^T Xc + lambda I)^-1 Xc^T Yc``,
  ``lambda`` chosen on a validation slice of the fitting set from a grid of
  half-decades wide enough that the choice is not at its edge for a few hundred
  to tens of thousands of pairs.
- ``mlp``: one hidden layer (GELU) plus a linear skip path, trained on
  ``1 - cos`` with AdamW and early stopping on a validation slice.
- ``mean``: the mean estimator, which maps every input to the mean target
  embedding. It is the baseline a learned map must beat: in anisotropic spaces
  its paired cosine is far above 0, while its recall@1 is chance.
- ``identity``: the source model is the network space's own model.

Every map takes ``[n, d_in]`` and returns ``[n, d_out]``; inputs and outputs are
L2-normalised embeddings (outputs are not re-normalised: cosine ignores scale).

:func:`select_map` chooses among fitted maps on held-out public pairs (never on
client data or on the queries a map is later judged on).
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from fednet.registry import Registry

__all__ = [
    "EmbeddingMap",
    "ProcrustesMap",
    "RidgeMap",
    "MLPMap",
    "MeanMap",
    "IdentityMap",
    "FitQuality",
    "register_map_method",
    "create_map",
    "map_from_state",
    "available_map_methods",
    "fit_quality",
    "select_map",
    "RIDGE_ALPHAS",
]

RIDGE_ALPHAS: tuple[float, ...] = tuple(10.0 ** (k / 2) for k in range(-10, 3))
"""Ridge penalties tried, relative to the mean diagonal of ``Xc^T Xc``: 1e-5 to 10."""

logger = logging.getLogger(__name__)


def _check_pairs(x: torch.Tensor, y: torch.Tensor) -> None:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() != 2:
            raise ValueError(f"`{name}` must be a float [n, d] tensor, got {t!r:.60}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"`{name}` holds NaN or infinite values")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"`x` and `y` must pair rows, got {x.shape[0]} and {y.shape[0]} rows")
    if x.shape[0] < 2:
        raise ValueError(f"a map needs at least 2 pairs to fit, got {x.shape[0]}")


def _split_validation(n: int, *, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    n_val = max(1, int(round(n * fraction)))
    return order[n_val:], order[:n_val]


class EmbeddingMap(ABC):
    """A fitted map ``[n, source_dim] -> [n, target_dim]``.

    Parameters
    ----------
    source_dim, target_dim : int
        Dimensions of the source space and of the network space.
    """

    method: ClassVar[str]

    def __init__(self, *, source_dim: int, target_dim: int) -> None:
        for key, value in (("source_dim", source_dim), ("target_dim", target_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{key}` must be an int >= 1, got {value!r}")
        self.source_dim = source_dim
        self.target_dim = target_dim
        self._state: dict[str, torch.Tensor] = {}

    # -- fitting and applying -------------------------------------------------------
    def fit(self, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0) -> EmbeddingMap:
        """Fit on paired rows ``x`` ``[n, source_dim]`` and ``y`` ``[n, target_dim]``."""
        _check_pairs(x, y)
        if x.shape[1] != self.source_dim or y.shape[1] != self.target_dim:
            raise ValueError(
                f"{self.method} map is {self.source_dim} -> {self.target_dim}, "
                f"got pairs {x.shape[1]} -> {y.shape[1]}"
            )
        self._state = {
            k: v.detach().float().contiguous()
            for k, v in self._fit(x.double(), y.double(), seed=seed).items()
        }
        return self

    @abstractmethod
    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, seed: int) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def _apply(self, x: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` (``[d_in]`` or ``[n, d_in]``) into the network space."""
        if not self._state:
            raise RuntimeError(f"the {self.method} map is not fitted")
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"a map takes a float tensor, got {type(x).__name__}")
        one = x.dim() == 1
        rows = x.reshape(1, -1) if one else x
        if rows.dim() != 2 or rows.shape[1] != self.source_dim:
            raise ValueError(
                f"{self.method} map takes [n, {self.source_dim}], got shape {tuple(x.shape)}"
            )
        with torch.no_grad():
            out = self._apply(rows.float())
        return out[0] if one else out

    def differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[n, d_in]`` rows with gradients flowing to ``x`` (the map stays fixed)."""
        if not self._state:
            raise RuntimeError(f"the {self.method} map is not fitted")
        if x.dim() != 2 or x.shape[1] != self.source_dim:
            raise ValueError(
                f"{self.method} map takes [n, {self.source_dim}], got shape {tuple(x.shape)}"
            )
        return self._apply(x.float())

    # -- state ----------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """Settings a reader needs to rebuild the map (JSON-ready)."""
        return {}

    def state(self) -> dict[str, torch.Tensor]:
        """The fitted tensors (copies)."""
        if not self._state:
            raise RuntimeError(f"the {self.method} map is not fitted")
        return {k: v.clone() for k, v in self._state.items()}

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensor name to shape of a fitted map of these dimensions."""
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> EmbeddingMap:
        """Load tensors from :meth:`state`; shapes must be :meth:`expected_shapes`."""
        want = self.expected_shapes()
        got = {k: tuple(v.shape) for k, v in state.items()}
        if got != want:
            raise ValueError(f"{self.method} map state has shapes {got}, expected {want}")
        for k, v in state.items():
            if not v.is_floating_point() or not bool(torch.isfinite(v).all()):
                raise ValueError(f"{self.method} map tensor {k!r} is not finite floats")
        self._state = {k: v.detach().float().contiguous() for k, v in state.items()}
        return self


class IdentityMap(EmbeddingMap):
    """The network space's own model: ``y = x``."""

    method = "identity"

    def __init__(self, *, source_dim: int, target_dim: int) -> None:
        super().__init__(source_dim=source_dim, target_dim=target_dim)
        if source_dim != target_dim:
            raise ValueError(f"an identity map needs equal dims, got {source_dim} -> {target_dim}")
        self._state = {"map.scale": torch.ones(1)}

    def _fit(self, x, y, *, seed):
        return {"map.scale": torch.ones(1)}

    def _apply(self, x):
        return x * self._state["map.scale"]

    def expected_shapes(self):
        return {"map.scale": (1,)}


class MeanMap(EmbeddingMap):
    """The mean estimator: every input maps to the mean fitting target."""

    method = "mean"

    def _fit(self, x, y, *, seed):
        return {"map.target_mean": y.mean(0)}

    def _apply(self, x):
        return self._state["map.target_mean"].expand(x.shape[0], -1).clone()

    def expected_shapes(self):
        return {"map.target_mean": (self.target_dim,)}


class _AffineMap(EmbeddingMap):
    """``y = (x - source_mean) @ weight + target_mean``."""

    def _apply(self, x):
        s = self._state
        return (x - s["map.source_mean"]) @ s["map.weight"] + s["map.target_mean"]

    def expected_shapes(self):
        return {
            "map.source_mean": (self.source_dim,),
            "map.weight": (self.source_dim, self.target_dim),
            "map.target_mean": (self.target_dim,),
        }


class ProcrustesMap(_AffineMap):
    """Scaled orthogonal Procrustes on centred embeddings (see the module notes)."""

    method = "procrustes"

    def _fit(self, x, y, *, seed):
        mx, my = x.mean(0), y.mean(0)
        xc, yc = x - mx, y - my
        u, sv, vh = torch.linalg.svd(xc.T @ yc, full_matrices=False)
        rotation = u @ vh
        scale = sv.sum() / (xc * xc).sum().clamp_min(1e-12)
        return {"map.source_mean": mx, "map.weight": scale * rotation, "map.target_mean": my}


class RidgeMap(_AffineMap):
    """Ridge regression on centred embeddings, penalty chosen on a validation slice.

    Parameters
    ----------
    alphas : tuple[float, ...]
        Candidate penalties ``lambda``, relative to the mean diagonal of ``Xc^T Xc``.
    validation_fraction : float
        Share of the fitting pairs held out to choose ``lambda``.
    """

    method = "ridge"

    def __init__(
        self,
        *,
        source_dim: int,
        target_dim: int,
        alphas: tuple[float, ...] = RIDGE_ALPHAS,
        validation_fraction: float = 0.1,
    ) -> None:
        super().__init__(source_dim=source_dim, target_dim=target_dim)
        if not alphas or any(not (a > 0 and math.isfinite(a)) for a in alphas):
            raise ValueError(f"`alphas` must be positive finite numbers, got {alphas!r}")
        if not 0 < validation_fraction < 0.5:
            raise ValueError(
                f"`validation_fraction` must be in (0, 0.5), got {validation_fraction}"
            )
        self.alphas = tuple(float(a) for a in alphas)
        self.validation_fraction = validation_fraction
        self.alpha: float | None = None

    @staticmethod
    def _solve(x, y, alpha):
        mx, my = x.mean(0), y.mean(0)
        xc = x - mx
        gram = xc.T @ xc
        ridge = alpha * gram.diagonal().mean().clamp_min(1e-12)
        eye = torch.eye(gram.shape[0], dtype=gram.dtype)
        return mx, torch.linalg.solve(gram + ridge * eye, xc.T @ (y - my)), my

    def _fit(self, x, y, *, seed):
        train, val = _split_validation(x.shape[0], fraction=self.validation_fraction, seed=seed)
        best = (-math.inf, self.alphas[0])
        for alpha in self.alphas:
            mx, w, my = self._solve(x[train], y[train], alpha)
            pred = (x[val] - mx) @ w + my
            cos = float(nn.functional.cosine_similarity(pred, y[val], dim=1).mean())
            best = max(best, (cos, alpha))
        self.alpha = best[1]
        mx, w, my = self._solve(x, y, self.alpha)
        return {"map.source_mean": mx, "map.weight": w, "map.target_mean": my}

    def hyperparameters(self):
        return {"alphas": list(self.alphas), "alpha": self.alpha}


class _MLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(d_in, hidden)
        self.out = nn.Linear(hidden, d_out)
        self.skip = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(nn.functional.gelu(self.hidden(x))) + self.skip(x)


class MLPMap(EmbeddingMap):
    """A one-hidden-layer MLP with a linear skip path, trained on ``1 - cos``.

    Parameters
    ----------
    hidden : int
        Hidden width.
    epochs : int
        Upper bound on passes over the fitting pairs (early stopping on a
        validation slice keeps the best epoch).
    learning_rate, weight_decay : float
        AdamW settings.
    batch_size : int
        Mini-batch size.
    """

    method = "mlp"

    def __init__(
        self,
        *,
        source_dim: int,
        target_dim: int,
        hidden: int = 512,
        epochs: int = 60,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        patience: int = 8,
    ) -> None:
        super().__init__(source_dim=source_dim, target_dim=target_dim)
        if hidden < 1 or epochs < 1 or batch_size < 1 or patience < 1:
            raise ValueError("`hidden`, `epochs`, `batch_size` and `patience` must be >= 1")
        if not (learning_rate > 0 and weight_decay >= 0):
            raise ValueError("`learning_rate` must be > 0 and `weight_decay` >= 0")
        self.hidden = hidden
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.patience = patience
        self.epochs_run = 0

    def _net(self) -> _MLP:
        return _MLP(self.source_dim, self.hidden, self.target_dim)

    def _fit(self, x, y, *, seed):
        x, y = x.float(), y.float()
        train, val = _split_validation(x.shape[0], fraction=0.1, seed=seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self._net()
            opt = torch.optim.AdamW(
                net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
            )
            best_cos, best_state, waited = -math.inf, None, 0
            for epoch in range(self.epochs):
                net.train()
                order = train[torch.randperm(len(train))]
                for i in range(0, len(order), self.batch_size):
                    idx = order[i : i + self.batch_size]
                    loss = 1 - nn.functional.cosine_similarity(net(x[idx]), y[idx], dim=1).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                net.eval()
                with torch.no_grad():
                    cos = float(nn.functional.cosine_similarity(net(x[val]), y[val], dim=1).mean())
                self.epochs_run = epoch + 1
                if cos > best_cos + 1e-5:
                    best_cos, waited = cos, 0
                    best_state = {f"map.{k}": v.clone() for k, v in net.state_dict().items()}
                else:
                    waited += 1
                    if waited >= self.patience:
                        break
        if best_state is None:  # every validation cosine was NaN
            raise FloatingPointError("the MLP map diverged: no finite validation cosine")
        return best_state

    def _apply(self, x):
        net = self._net()
        net.load_state_dict({k.removeprefix("map."): v for k, v in self._state.items()})
        net.eval()
        return net(x)

    def expected_shapes(self):
        return {f"map.{k}": tuple(v.shape) for k, v in self._net().state_dict().items()}

    def hyperparameters(self):
        return {
            "hidden": self.hidden,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "patience": self.patience,
        }


MAP_METHODS: Registry[type[EmbeddingMap]] = Registry("map method")


def register_map_method(name: str, cls: type[EmbeddingMap]) -> None:
    """Register map class ``cls`` under ``name``."""
    if not isinstance(cls, type) or not issubclass(cls, EmbeddingMap):
        raise TypeError(f"map method {name!r} must be an EmbeddingMap subclass, got {cls!r}")
    MAP_METHODS.register(name, cls)


def available_map_methods() -> list[str]:
    """Names of the registered map methods."""
    return MAP_METHODS.names()


def create_map(method: str, *, source_dim: int, target_dim: int, **settings: Any) -> EmbeddingMap:
    """An unfitted map of ``method``; unknown names list the valid ones."""
    cls = MAP_METHODS.get(method)
    return cls(source_dim=source_dim, target_dim=target_dim, **settings)


def map_from_state(
    method: str,
    *,
    source_dim: int,
    target_dim: int,
    hyperparameters: dict[str, Any],
    state: dict[str, torch.Tensor],
) -> EmbeddingMap:
    """Rebuild a fitted map from its method, dimensions, settings and tensors."""
    settings = dict(hyperparameters)
    fitted_alpha = settings.pop("alpha", None)
    m = create_map(method, source_dim=source_dim, target_dim=target_dim, **settings)
    if isinstance(m, RidgeMap):
        m.alpha = fitted_alpha
    return m.load_state(state)


for _cls in (ProcrustesMap, RidgeMap, MLPMap, MeanMap, IdentityMap):
    register_map_method(_cls.method, _cls)


@dataclass(frozen=True)
class FitQuality:
    """How well a map predicts held-out pairs.

    Attributes
    ----------
    paired_cosine : float
        Mean cosine between ``map(x_i)`` and ``y_i`` over the held-out pairs.
    recall_at_1 : float
        Share of ``i`` among ``pool`` held-out pairs whose nearest target (by
        cosine) to ``map(x_i)`` is ``y_i``; chance is ``1 / pool``.
    pool : int
        Candidates per retrieval (1,000 in the figures).
    held_out : int
        Held-out pairs behind ``paired_cosine``.
    """

    paired_cosine: float
    recall_at_1: float
    pool: int
    held_out: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "paired_cosine": self.paired_cosine,
            "recall_at_1": self.recall_at_1,
            "pool": self.pool,
            "held_out": self.held_out,
        }


def fit_quality(
    m: EmbeddingMap, x: torch.Tensor, y: torch.Tensor, *, pool: int = 1000
) -> FitQuality:
    """Paired cosine and recall@1 among ``pool`` of ``m`` on held-out pairs ``(x, y)``.

    Recall uses the first ``pool`` pairs (callers shuffle); ties count against
    the map (the first of equal scores wins), so a constant map scores at most
    ``1 / pool``.

    Raises
    ------
    ValueError
        If there are fewer than ``pool`` held-out pairs.
    """
    _check_pairs(x, y)
    if x.shape[0] < pool:
        raise ValueError(f"recall@1 among {pool} needs >= {pool} held-out pairs, got {x.shape[0]}")
    pred = nn.functional.normalize(m(x).float(), dim=1)
    target = nn.functional.normalize(y.float(), dim=1)
    paired = float((pred * target).sum(1).mean())
    sims = pred[:pool] @ target[:pool].T
    hits = int((sims.argmax(dim=1) == torch.arange(pool)).sum())
    return FitQuality(
        paired_cosine=paired, recall_at_1=hits / pool, pool=pool, held_out=int(x.shape[0])
    )


def select_map(
    maps: dict[str, EmbeddingMap],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    criterion: str = "recall_at_1",
) -> tuple[str, dict[str, FitQuality]]:
    """The map that best predicts held-out public pairs ``(x, y)``, and every score.

    Parameters
    ----------
    maps : dict of str to EmbeddingMap
        Fitted candidates by name (e.g. method).
    x, y : torch.Tensor
        ``[n, d_in]`` and ``[n, d_out]`` paired embeddings of public texts that
        none of ``maps`` was fitted on; recall@1 is among all ``n``.
    criterion : str
        ``recall_at_1`` (ties broken by paired cosine) or ``paired_cosine``.

    Returns
    -------
    tuple[str, dict[str, FitQuality]]
        The chosen name (the first of equal scores) and each candidate's quality.

    Raises
    ------
    ValueError
        If ``maps`` is empty or ``criterion`` is unknown.
    """
    if not maps:
        raise ValueError("select_map needs at least one fitted map")
    if criterion not in ("recall_at_1", "paired_cosine"):
        raise ValueError(f"`criterion` must be 'recall_at_1' or 'paired_cosine', got {criterion!r}")
    scores = {name: fit_quality(m, x, y, pool=int(x.shape[0])) for name, m in maps.items()}

    def key(name: str) -> tuple[float, float]:
        q = scores[name]
        if criterion == "paired_cosine":
            return (q.paired_cosine, q.recall_at_1)
        return (q.recall_at_1, q.paired_cosine)

    best = max(scores, key=key)  # max returns the first of equal keys
    return best, scores
