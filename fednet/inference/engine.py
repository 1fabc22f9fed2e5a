"""One base model, many hot-swappable LoRA adapters, mixed-adapter batches.

:class:`AdapterEngine` builds the frozen base encoder once. Adapters come from
the hub (fetched and verified into a disk cache) and are attached to the same
peft model under their own names; an LRU keeps at most ``cache_size`` of them,
so switching adapter never reloads the base. A batch may mix adapters: peft's
mixed-batch forward runs the base layers once for every row and adds each row's
own LoRA delta, then each row goes through its own head.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file

from fednet.errors import IntegrityError, NotFoundError
from fednet.hub.bundle import (
    HEAD_FILE,
    REQUIRED_FILES,
    check_adapter_fits,
    locked_dir,
    sha256_hex,
)
from fednet.hub.manifest import Manifest, VersionSpec
from fednet.hub.trust import TrustStore
from fednet.models import create_base_model, load_tokenizer, mean_pool

__all__ = ["AdapterSource", "LoadedAdapter", "AdapterEngine"]

logger = logging.getLogger(__name__)

_BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


class AdapterSource(Protocol):
    """Where adapters come from: a :class:`~fednet.hub.HubStore` or ``HubClient``."""

    def resolve(self, name: str, version: VersionSpec = "latest") -> Manifest: ...

    def fetch(self, name: str, version: VersionSpec, dest_dir: str | Path) -> Manifest: ...


@dataclass(frozen=True, eq=False)
class LoadedAdapter:
    """An adapter attached to the engine's peft model, with its head."""

    manifest: Manifest
    key: str
    weight: torch.Tensor
    bias: torch.Tensor

    @property
    def label_names(self) -> tuple[str, ...]:
        """Labels of the head, in output order."""
        return self.manifest.label_names

    @property
    def ref(self) -> str:
        """``name@vN``."""
        return self.manifest.ref


class AdapterEngine:
    """Serve many LoRA adapters of one base model from one copy of its weights.

    Parameters
    ----------
    base_model : str
        Registered base model.
    source : AdapterSource, optional
        Hub to fetch adapters from; without it only :meth:`load_dir` works.
    cache_dir : str or Path, optional
        Disk cache of fetched adapters (a temporary directory by default).
    cache_size : int
        Adapters kept attached (LRU).
    max_length : int
        Tokens per text.
    resolve_ttl_s : float
        Seconds a resolved ``latest`` version is reused.
    trust : TrustStore, optional
        Owner keys this engine trusts (default: the source's ``trust``, else
        the trust store file). Every manifest is checked against it before an
        adapter is attached, from the hub or from the disk cache alike.
    """

    def __init__(
        self,
        base_model: str,
        *,
        source: AdapterSource | None = None,
        cache_dir: str | Path | None = None,
        cache_size: int = 8,
        max_length: int = 64,
        resolve_ttl_s: float = 30.0,
        trust: TrustStore | None = None,
    ) -> None:
        if trust is None:
            trust = getattr(source, "trust", None)
        self.trust: TrustStore = trust if isinstance(trust, TrustStore) else TrustStore()
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"`cache_size` must be an int >= 1, got {cache_size!r}")
        self.base_model = base_model
        self.source = source
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if cache_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fednet-adapters-")
            cache_dir = self._tmp.name
        self.cache_dir = Path(cache_dir)
        self.cache_size = cache_size
        self.max_length = max_length
        self.resolve_ttl_s = resolve_ttl_s
        started = time.perf_counter()
        self.base = create_base_model(base_model)
        self.tokenizer = load_tokenizer(base_model)
        self.hidden_size = int(getattr(self.base, "config").hidden_size)  # noqa: B009
        self.base_load_s = time.perf_counter() - started
        self._model: Any = None  # peft PeftModel once an adapter is attached
        self._lru: OrderedDict[str, LoadedAdapter] = OrderedDict()
        self._resolved: dict[str, tuple[float, Manifest]] = {}
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._counter = 0
        self.base_loads = 1
        self.forward_passes = 0
        self.last_load: tuple[str, float] = ("", 0.0)

    # -- adapters -------------------------------------------------------------------

    @property
    def loaded(self) -> list[str]:
        """References of the attached adapters, least recently used first."""
        with self._lock:
            return list(self._lru)

    def resolve(self, name: str, version: VersionSpec = "latest") -> Manifest:
        """The manifest of ``name@version``, reusing a recent ``latest`` answer."""
        if self.source is None:
            raise NotFoundError(f"adapter {name!r} is not loaded and this engine has no hub")
        if version != "latest":
            return self.source.resolve(name, version)
        hit = self._resolved.get(name)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.resolve_ttl_s:
            return hit[1]
        manifest = self.source.resolve(name, "latest")
        self._resolved[name] = (now, manifest)
        return manifest

    def ensure(self, name: str, version: VersionSpec = "latest") -> LoadedAdapter:
        """Attach ``name@version`` if needed and mark it most recently used.

        The adapter comes from memory, from the disk cache (files re-hashed
        against the manifest) or from the hub (signature and sha256 verified).
        ``last_load`` records ``(source, seconds)``.

        Raises
        ------
        NotFoundError
            If the hub does not have the adapter.
        IntegrityError, SignatureError
            If it fails verification.
        UntrustedKeyError
            If its owner's key is not in the engine's trust store.
        ValueError
            If it is for another base model or its head does not fit.
        """
        started = time.perf_counter()
        manifest = self.resolve(name, version)
        self.trust.check(manifest)
        with self._lock:
            hit = self._lru.get(manifest.ref)
            if hit is not None:
                self._lru.move_to_end(manifest.ref)
                self.last_load = ("memory", time.perf_counter() - started)
                return hit
        self._check_base(manifest)
        directory = self.cache_dir / manifest.name / f"v{manifest.version}"
        source = "disk"
        with self._load_lock:
            hit = self._lru.get(manifest.ref)
            if hit is not None:
                return hit
            # engines in other processes may share this cache: one at a time per adapter name
            with locked_dir(directory.parent):
                if not self._cached_ok(directory, manifest):
                    fetched = self._fetch(manifest, directory)
                    if fetched.signature != manifest.signature:
                        raise IntegrityError(f"hub served a different manifest for {manifest.ref}")
                    source = "hub"
                loaded = self.load_dir(directory, manifest)
        self.last_load = (source, time.perf_counter() - started)
        logger.info("loaded %s from %s in %.3fs", manifest.ref, source, self.last_load[1])
        return loaded

    def _fetch(self, manifest: Manifest, directory: Path) -> Manifest:
        """Fetch into a hidden sibling, then swap it in for a stale ``directory``.

        The caller holds :func:`locked_dir` on ``directory.parent``.
        """
        if self.source is None:
            raise NotFoundError(f"adapter {manifest.ref} is not cached and this engine has no hub")
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
        try:
            fetched = self.source.fetch(manifest.name, manifest.version, staging / "new")
            if directory.exists():
                os.replace(directory, staging / "old")
            os.replace(staging / "new", directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return fetched

    def _check_base(self, manifest: Manifest) -> None:
        if manifest.base_model != self.base_model:
            raise ValueError(
                f"adapter {manifest.ref} is for base model {manifest.base_model!r}; "
                f"this engine runs {self.base_model!r}"
            )

    @staticmethod
    def _cached_ok(directory: Path, manifest: Manifest) -> bool:
        if not directory.is_dir():
            return False
        for filename, digest in manifest.files.items():
            path = directory / filename
            if not path.is_file() or sha256_hex(path.read_bytes()) != digest:
                logger.warning("disk cache of %s is stale or altered; refetching", manifest.ref)
                return False
        return True

    def load_dir(self, directory: str | Path, manifest: Manifest) -> LoadedAdapter:
        """Attach the adapter in ``directory`` described by ``manifest``.

        The manifest is checked against the engine's trust store, the files
        against the manifest's sha256, and the adapter's tensors against the
        base model and its own ``adapter_config.json``. An adapter that still
        fails inside peft is removed again, so a failed load leaves the model
        as it was.

        Raises
        ------
        SignatureError, UntrustedKeyError
            If ``manifest`` does not verify under a key the engine trusts.
        IntegrityError
            If a file in ``directory`` does not match the manifest's sha256.
        ValueError
            If the adapter is for another base model, does not fit it, has no
            usable head, or peft cannot load it; the model is unchanged.
        """
        self.trust.check(manifest)
        self._check_base(manifest)
        if not self._cached_ok(Path(directory), manifest):
            raise IntegrityError(f"files in {str(directory)!r} do not match {manifest.ref}")
        directory = Path(directory)
        weight, bias = self._read_head(directory, manifest)
        try:
            files = {name: (directory / name).read_bytes() for name in REQUIRED_FILES}
        except OSError as e:
            raise ValueError(f"adapter {manifest.ref} cannot be read from {directory}: {e}") from e
        check_adapter_fits(files, base_model=self.base_model, where=manifest.ref)
        with self._lock:
            if manifest.ref in self._lru:
                self._lru.move_to_end(manifest.ref)
                return self._lru[manifest.ref]
            self._counter += 1
            key = f"adapter{self._counter}"
            self._attach(directory, key, manifest)
            loaded = LoadedAdapter(manifest=manifest, key=key, weight=weight, bias=bias)
            self._lru[manifest.ref] = loaded
            while len(self._lru) > self.cache_size:
                ref, old = self._lru.popitem(last=False)
                self._model.delete_adapter(old.key)
                logger.debug("evicted %s", ref)
            return loaded

    def _attach(self, directory: Path, key: str, manifest: Manifest) -> None:
        """Load the adapter into the peft model as ``key``; on failure, remove it again."""
        from peft import PeftModel

        try:
            if self._model is None:
                self._model = PeftModel.from_pretrained(self.base, str(directory), adapter_name=key)
                self._model.eval()
            else:
                self._model.load_adapter(str(directory), adapter_name=key)
        except Exception as e:  # peft and safetensors raise many kinds; none may leave a trace
            if self._model is None:
                # peft injected LoRA layers into the base in place: start again from a clean copy
                self.base = create_base_model(self.base_model)
                self.base_loads += 1
            elif key in self._model.peft_config:
                self._model.delete_adapter(key)
            logger.warning("adapter %s failed to load and was removed: %s", manifest.ref, e)
            raise ValueError(f"adapter {manifest.ref} failed to load: {e}") from e

    def _read_head(self, directory: Path, manifest: Manifest) -> tuple[torch.Tensor, torch.Tensor]:
        path = directory / HEAD_FILE
        if not path.is_file():
            raise ValueError(f"adapter {manifest.ref} has no {HEAD_FILE}; it cannot classify")
        state = load_file(str(path))
        weight, bias = state.get("head.weight"), state.get("head.bias")
        labels = len(manifest.label_names)
        if weight is None or bias is None:
            raise ValueError(f"{HEAD_FILE} of {manifest.ref} lacks head.weight/head.bias")
        if tuple(weight.shape) != (labels, self.hidden_size) or tuple(bias.shape) != (labels,):
            raise ValueError(
                f"head of {manifest.ref} has shape {tuple(weight.shape)}; expected "
                f"({labels}, {self.hidden_size}) for {labels} labels on {self.base_model}"
            )
        return weight.float(), bias.float()

    def unload(self, name: str) -> bool:
        """Detach every loaded version of adapter ``name``; ``True`` if one was loaded.

        The disk cache is kept, so the next :meth:`ensure` loads from disk.
        """
        with self._lock:
            refs = [ref for ref, a in self._lru.items() if a.manifest.name == name]
            for ref in refs:
                self._model.delete_adapter(self._lru.pop(ref).key)
            return bool(refs)

    # -- inference ---------------------------------------------------------------------

    def _encode(self, texts: Sequence[str], keys: Sequence[str]) -> torch.Tensor:
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids, mask = batch["input_ids"], batch["attention_mask"]
        with torch.inference_mode():
            if self._model is None:
                hidden = self.base(input_ids=ids, attention_mask=mask).last_hidden_state
            else:
                hidden = self._model(
                    input_ids=ids, attention_mask=mask, adapter_names=list(keys)
                ).last_hidden_state
            self.forward_passes += 1
            return mean_pool(hidden, mask)

    def classify_groups(
        self, groups: Sequence[tuple[LoadedAdapter, Sequence[str]]]
    ) -> list[torch.Tensor]:
        """Class probabilities of every group's texts, in one forward pass.

        Parameters
        ----------
        groups : sequence of (LoadedAdapter, texts)
            Texts to classify with each adapter.

        Returns
        -------
        list[torch.Tensor]
            ``[n_i, labels_i]`` probabilities per group.
        """
        texts: list[str] = []
        keys: list[str] = []
        for adapter, group in groups:
            texts += list(group)
            keys += [adapter.key] * len(group)
        if not texts:
            return [torch.empty(0, len(a.label_names)) for a, _ in groups]
        with self._lock:
            for adapter, _ in groups:
                if self._lru.get(adapter.ref) is not adapter:
                    raise NotFoundError(f"adapter {adapter.ref} was evicted; ensure() it again")
            pooled = self._encode(texts, keys)
        out, start = [], 0
        with torch.inference_mode():
            for adapter, group in groups:
                rows = pooled[start : start + len(group)]
                start += len(group)
                out.append(torch.softmax(rows @ adapter.weight.T + adapter.bias, dim=-1))
        return out

    def classify(self, texts: Sequence[str], adapter: LoadedAdapter) -> torch.Tensor:
        """``[n, labels]`` probabilities of ``texts`` under one adapter."""
        return self.classify_groups([(adapter, texts)])[0]

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised mean-pooled embeddings from the frozen base (no LoRA)."""
        with self._lock:
            pooled = self._encode(texts, [_BASE] * len(texts))
        return torch.nn.functional.normalize(pooled, dim=-1)
