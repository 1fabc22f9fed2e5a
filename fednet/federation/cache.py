"""A client's local cache of its prepared private data.

In deployment Flower starts a fresh ClientApp process for every message, so a
client would load, split and partition its data set (and import ``datasets``,
``pandas`` and ``pyarrow`` to do it) once per message. With a cache directory
set (``flower-client`` passes its ``--state-dir`` as node config), the first
process writes the prepared split to ``<state-dir>/<client-id>/cache/`` and
every later one reads that file instead.

The file is keyed by everything that shapes the split: the client's preset
entry, the federation's seed, test fraction and evaluation size, and (for a
local data file) its path, size and modification time. It stays on the
client's machine, readable only by its owner.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fednet.atomic import write_atomic

if TYPE_CHECKING:
    from fednet.config import ClientConfig, FederationConfig
    from fednet.federation.client_data import ClientData

__all__ = ["use_cache_dir", "cache_dir", "data_key", "cached_client_data"]

logger = logging.getLogger(__name__)

_CACHE_VERSION = 2
_cache_dir: Path | None = None


def use_cache_dir(path: str | Path | None) -> None:
    """Cache prepared client data under ``path`` in this process (None: no cache)."""
    global _cache_dir
    _cache_dir = Path(path).expanduser() if path is not None else None


def cache_dir() -> Path | None:
    """The cache directory of this process, if any."""
    return _cache_dir


def _source_fingerprint(dataset: str) -> list[Any]:
    p = Path(dataset).expanduser()
    if p.is_file():
        st = p.stat()
        return [str(p.resolve()), st.st_size, st.st_mtime_ns]
    return [dataset]


def data_key(cfg: FederationConfig, client: ClientConfig) -> str:
    """SHA-256 of everything that determines ``client``'s prepared data."""
    from fednet import __version__

    payload = {
        "version": _CACHE_VERSION,
        "fednet": __version__,
        "client": dataclasses.asdict(client),
        "seed": cfg.seed,
        "test_fraction": cfg.test_fraction,
        "eval_examples": cfg.eval_examples,
        "source": _source_fingerprint(client.dataset),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read(path: Path) -> ClientData | None:
    from fednet.federation.client_data import ClientData

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(ClientData)}
        if set(raw) != fields:
            raise ValueError(f"fields {sorted(raw)} differ from {sorted(fields)}")
        report = raw.pop("report")
        if not isinstance(report, dict):
            raise ValueError("`report` is not an object")
        return ClientData(**{k: tuple(v) for k, v in raw.items()}, report=report)
    except (OSError, ValueError, TypeError) as e:
        logger.warning("ignoring unreadable data cache %s: %s", path, e)
        return None


def _write(path: Path, data: ClientData) -> None:
    fields = dataclasses.asdict(data)
    report = fields.pop("report")
    text = json.dumps({**{k: list(v) for k, v in fields.items()}, "report": report})
    write_atomic(path, text.encode("utf-8"))  # created 0600, like the split it caches
    for old in path.parent.glob("data-*.json"):
        if old != path:
            old.unlink(missing_ok=True)


def cached_client_data(cfg: FederationConfig, client: ClientConfig) -> ClientData:
    """``client``'s prepared data, from the cache when one is set and current."""
    from fednet.federation.client_data import load_client_data

    if _cache_dir is None:
        return load_client_data(cfg, client)
    path = _cache_dir / client.id / "cache" / f"data-{data_key(cfg, client)[:24]}.json"
    if path.is_file():
        data = _read(path)
        if data is not None:
            logger.debug("client %s: data from cache %s", client.id, path)
            return data
    data = load_client_data(cfg, client)
    try:
        _write(path, data)
        logger.debug("client %s: data cached in %s", client.id, path)
    except OSError as e:
        logger.warning("could not write the data cache %s: %s", path, e)
    return data
