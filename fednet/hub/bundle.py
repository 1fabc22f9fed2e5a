"""Adapter directories on disk: read, hash, check against a manifest, write atomically.

Shared by the local store and the HTTP client so both hash, sign and check
files the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from fednet.atomic import write_atomic as _write_atomic
from fednet.errors import IntegrityError
from fednet.hub.keys import Ed25519PrivateKey, sign_manifest
from fednet.hub.manifest import Manifest, check_filename

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "HEAD_FILE",
    "SKETCH_FILE",
    "REQUIRED_FILES",
    "sha256_hex",
    "read_adapter_dir",
    "prepare_publish",
    "prepare_unsigned",
    "check_files",
    "check_required_files",
    "check_adapter_fits",
    "check_artifact_fits",
    "tensor_shapes",
    "write_atomic",
    "write_files_atomically",
    "locked_dir",
]

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HEAD_FILE = "head.safetensors"
SKETCH_FILE = "sketch.safetensors"
REQUIRED_FILES: tuple[str, ...] = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_adapter_dir(adapter_dir: str | Path) -> dict[str, bytes]:
    """Read every top-level, non-hidden regular file of an adapter directory.

    Raises
    ------
    ValueError
        If the directory does not exist, a file name is not a plain name, or a
        PEFT file in :data:`REQUIRED_FILES` is missing.
    """
    root = Path(adapter_dir)
    if not root.is_dir():
        raise ValueError(f"`adapter_dir` must be an existing directory, got {str(root)!r}")
    files: dict[str, bytes] = {}
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if not path.is_file():
            logger.warning("skipping %s: adapters publish top-level files only", path)
            continue
        check_filename(f"file in {root}", path.name)
        files[path.name] = path.read_bytes()
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise ValueError(f"adapter directory {str(root)!r} is missing PEFT files {missing}")
    return files


def prepare_publish(
    adapter_dir: str | Path, draft: Manifest, key: Ed25519PrivateKey
) -> tuple[Manifest, dict[str, bytes]]:
    """Hash an adapter directory into ``draft`` and sign it.

    :func:`prepare_unsigned`, then :func:`~fednet.hub.keys.sign_manifest`.
    """
    unsigned, files = prepare_unsigned(adapter_dir, draft)
    return sign_manifest(unsigned, key), files


def prepare_unsigned(adapter_dir: str | Path, draft: Manifest) -> tuple[Manifest, dict[str, bytes]]:
    """Hash an adapter directory into ``draft``, for its owner to sign.

    Parameters
    ----------
    adapter_dir : str or Path
        PEFT adapter directory (``adapter_config.json``,
        ``adapter_model.safetensors``, optionally ``head.safetensors`` and
        ``sketch.safetensors``).
    draft : Manifest
        Every descriptive field; ``files``, ``owner_public_key``,
        ``signature`` and ``version`` are filled in here and by the store.
        ``sketch`` defaults to ``sketch.safetensors`` when that file exists.

    Returns
    -------
    tuple[Manifest, dict[str, bytes]]
        The unsigned manifest and the file contents it hashes.

    Raises
    ------
    ValueError
        If ``draft.rank`` differs from ``r`` in ``adapter_config.json``, the
        config is not JSON, or the tensors do not fit ``draft.base_model`` or
        the config (:func:`check_adapter_fits`).
    """
    if not isinstance(draft, Manifest):
        raise TypeError(f"`draft` must be a Manifest, got {type(draft).__name__}")
    files = read_adapter_dir(adapter_dir)
    try:
        config = json.loads(files[ADAPTER_CONFIG])
    except json.JSONDecodeError as e:
        raise ValueError(f"{ADAPTER_CONFIG} in {str(adapter_dir)!r} is not JSON: {e}") from e
    config_rank = config.get("r") if isinstance(config, dict) else None
    if config_rank is not None and config_rank != draft.rank:
        raise ValueError(
            f"`rank` is {draft.rank} but {ADAPTER_CONFIG} in {str(adapter_dir)!r} "
            f"has r={config_rank}"
        )
    check_artifact_fits(draft, files, where=repr(str(adapter_dir)))
    sketch = draft.sketch
    if sketch is None and SKETCH_FILE in files:
        sketch = SKETCH_FILE
    unsigned = replace(
        draft,
        version=0,
        sketch=sketch,
        files={name: sha256_hex(data) for name, data in files.items()},
        owner_public_key="",
        signature="",
    )
    return unsigned, files


def tensor_shapes(data: bytes, filename: str = ADAPTER_WEIGHTS) -> dict[str, tuple[int, ...]]:
    """Tensor name to shape, read from a safetensors header without loading the data.

    Raises
    ------
    ValueError
        If ``data`` is not a safetensors file.
    """
    problem = f"{filename} is not a safetensors file"
    if len(data) < 8:
        raise ValueError(f"{problem}: {len(data)} bytes")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise ValueError(f"{problem}: its header claims {size} bytes, the file has {len(data)}")
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{problem}: {e}") from e
    if not isinstance(header, dict):
        raise ValueError(f"{problem}: its header is not a JSON object")
    out: dict[str, tuple[int, ...]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ValueError(f"{problem}: tensor {name!r} has no valid shape")
        out[name] = tuple(shape)
    return out


def check_adapter_fits(files: Mapping[str, bytes], *, base_model: str, where: str) -> None:
    """Check that a PEFT LoRA adapter's tensors fit ``base_model`` and its own config.

    See :func:`fednet.models.adapters.adapter_fit_problems` for what is checked.

    Parameters
    ----------
    files : mapping
        At least ``adapter_config.json`` and ``adapter_model.safetensors``.
    base_model : str
        The registered base model the adapter is published for.
    where : str
        Names the adapter in the error (a directory or ``name@vN``).

    Raises
    ------
    ValueError
        Naming every problem at once.
    """
    from fednet.models.adapters import adapter_fit_problems

    try:
        config = json.loads(files[ADAPTER_CONFIG])
        shapes = tensor_shapes(bytes(files[ADAPTER_WEIGHTS]))
    except (KeyError, json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"adapter {where} is not a readable PEFT adapter: {e}") from e
    if not isinstance(config, dict):
        raise ValueError(f"adapter {where}: {ADAPTER_CONFIG} is not a JSON object")
    problems = adapter_fit_problems(config, shapes, base_model)
    if problems:
        shown = problems[:6] + ([f"... and {len(problems) - 6} more"] if len(problems) > 6 else [])
        raise ValueError(
            f"adapter {where} does not fit base model {base_model!r}: " + "; ".join(shown)
        )


def check_artifact_fits(manifest: Manifest, files: Mapping[str, bytes], *, where: str) -> None:
    """Check an artifact's files by its manifest's kind.

    A representation map (``kind`` :data:`~fednet.hub.maps.MAP_KIND`) is checked
    by :func:`~fednet.hub.maps.map_fit_problems`; anything else is a LoRA adapter
    and goes through :func:`check_adapter_fits`, which refuses a map's config.

    Raises
    ------
    ValueError
        Naming every problem at once.
    """
    from fednet.hub.maps import MAP_KIND, map_fit_problems

    if manifest.kind != MAP_KIND:
        check_adapter_fits(files, base_model=manifest.base_model, where=where)
        return
    try:
        shapes = tensor_shapes(bytes(files[ADAPTER_WEIGHTS]))
        problems = map_fit_problems(
            bytes(files[ADAPTER_CONFIG]),
            shapes,
            base_model=manifest.base_model,
            rank=manifest.rank,
        )
    except (KeyError, ValueError) as e:
        problems = [f"not a readable map: {e}"]
    if problems:
        raise ValueError(f"representation map {where}: " + "; ".join(problems))


def check_required_files(manifest: Manifest) -> None:
    """Raise ``ValueError`` if ``manifest`` lacks a PEFT file in :data:`REQUIRED_FILES`."""
    missing = [name for name in REQUIRED_FILES if name not in manifest.files]
    if missing:
        raise ValueError(f"manifest {manifest.ref} `files` is missing PEFT files {missing}")


def check_files(manifest: Manifest, files: Mapping[str, bytes]) -> None:
    """Check that ``files`` are exactly the manifest's files with matching sha256.

    Every problem is collected before raising once.

    Raises
    ------
    IntegrityError
        Naming each missing, unexpected or mismatching file.
    """
    problems: list[str] = []
    for name in sorted(set(manifest.files) - set(files)):
        problems.append(f"file {name!r} is listed in the manifest but was not supplied")
    for name in sorted(set(files) - set(manifest.files)):
        problems.append(f"file {name!r} is not listed in the manifest")
    for name, expected in manifest.files.items():
        if name not in files:
            continue
        data = files[name]
        if not isinstance(data, bytes | bytearray):
            problems.append(f"file {name!r} must be bytes, got {type(data).__name__}")
            continue
        actual = sha256_hex(bytes(data))
        if actual != expected:
            problems.append(f"file {name!r} has sha256 {actual}, but the manifest says {expected}")
    if problems:
        raise IntegrityError(f"adapter {manifest.ref}: " + "; ".join(problems))


write_atomic = _write_atomic  # one implementation, in fednet.atomic


@contextlib.contextmanager
def locked_dir(directory: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created if missing) against every
    process and thread that locks it too.

    The lock is ``flock(2)`` on the directory itself, so no lock file is left
    beside a user's files; it is released when the block ends or the process
    dies. Not reentrant: do not lock a directory already held.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holds(dest: Path, files: Mapping[str, bytes]) -> bool:
    """Whether ``dest`` already holds exactly these bytes under these names."""
    for name, data in files.items():
        try:
            if (dest / name).read_bytes() != data:
                return False
        except OSError:
            return False
    return True


def write_files_atomically(dest_dir: str | Path, files: Mapping[str, bytes]) -> None:
    """Write verified ``files`` into ``dest_dir``, safely against other processes.

    A missing ``dest_dir`` is built as a hidden sibling and renamed into place,
    so it appears complete or not at all. In an existing directory that already
    holds these exact files nothing is written; otherwise each file is replaced
    atomically, and other files there are left alone. Writers into one parent
    directory take turns (:func:`locked_dir` on the parent), so processes
    pulling into the same place never see ``Directory not empty`` or a mix of
    two writes.
    """
    dest = Path(dest_dir)
    for name in files:
        check_filename("file name", name)
    with locked_dir(dest.parent):
        if dest.exists():
            if not dest.is_dir():
                raise ValueError(f"`dest_dir` exists and is not a directory: {str(dest)!r}")
            if _holds(dest, files):
                return
            for name, data in files.items():
                write_atomic(dest / name, data)
            return
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
        try:
            for name, data in files.items():
                write_atomic(staging / name, data)
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
