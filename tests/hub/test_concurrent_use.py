"""Several processes using one hub store, one pull directory and one adapter cache at once."""

from __future__ import annotations

import multiprocessing
import os
import traceback
from pathlib import Path
from typing import Any

import pytest

from fednet.hub import HubStore, sha256_hex
from fednet.hub.bundle import read_adapter_dir
from fednet.hub.publish import publish_run

pytestmark = pytest.mark.integration

WORKERS = 3
ROUNDS = 3


def _run_all(target: Any, args: list[tuple[Any, ...]], timeout: float = 300) -> list[str]:
    """Run ``target(*a, start, errors)`` in one spawned process per ``a``, released together
    by a barrier; return every error they reported (a traceback each)."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(args))
    errors = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, start, errors)) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    out = []
    while not errors.empty():
        out.append(errors.get())
    for p in procs:
        if p.is_alive():
            p.kill()
            out.append(f"process {p.pid} did not finish")
        elif p.exitcode != 0:
            out.append(f"process {p.pid} exited with {p.exitcode}")
    return out


def _pull(hub_root: str, names: list[str], dest: str, start: Any, errors: Any) -> None:
    try:
        with HubStore(hub_root) as store:
            start.wait()
            for i in range(ROUNDS):
                for name in names:
                    store.fetch(name, "latest", Path(dest) / name)
                    store.fetch(name, "latest", Path(dest) / f"{name}-{i % 2}")
    except BaseException:
        errors.put(traceback.format_exc())


def _publish(hub_root: str, adapter: str, keys: str, start: Any, errors: Any) -> None:
    from fednet.hub.publish import client_key, publish_adapter_dir

    try:
        with HubStore(hub_root) as store:
            key = client_key(keys, "spam-0")
            start.wait()
            for _ in range(ROUNDS):
                publish_adapter_dir(adapter, store, name="again", owner="spam-0", key=key)
    except BaseException:
        errors.put(traceback.format_exc())


def _serve(
    hub_root: str, cache: str, names: list[str], tamper: bool, start: Any, errors: Any
) -> None:
    from fednet.hub.publish import keys_dir_trust
    from fednet.inference import AdapterEngine

    try:
        with HubStore(hub_root) as store:
            trust = keys_dir_trust(Path(hub_root).parent / "keys")  # the reader pinned the owners
            engine = AdapterEngine(
                "tiny-bert", source=store, cache_dir=cache, cache_size=1, trust=trust
            )
            start.wait()
            for i in range(ROUNDS):
                for name in names:
                    if tamper and i % 2:  # an altered cache entry makes every engine refetch it
                        cached = Path(cache) / name / "v1" / "head.safetensors"
                        if cached.exists():  # replaced, not rewritten in place: the
                            # other engine may have the old file memory-mapped
                            altered = cached.with_name(f".altered-{os.getpid()}")
                            altered.write_bytes(b"altered")
                            os.replace(altered, cached)
                    adapter = engine.ensure(name)
                    probs = engine.classify(["win a prize now"], adapter)
                    assert probs.shape == (1, len(adapter.label_names))
    except BaseException:
        errors.put(traceback.format_exc())


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.inference.fake_run import write_run  # torch: kept out of the workers' imports

    root = tmp_path_factory.mktemp("hub")
    run = write_run(root / "run")
    with HubStore(root / "hub") as store:
        publish_run(run, store, vet=None, keys_dir=root / "keys", kinds=["shared"])
    return root


def test_pulls_into_one_directory(hub_root: Path, tmp_path: Path) -> None:
    names = ["spam-0-shared", "news-0-shared"]
    args = [(str(hub_root / "hub"), names, str(tmp_path / "pulled"))] * WORKERS
    assert _run_all(_pull, args) == []
    with HubStore(hub_root / "hub") as store:
        for name in names:
            want = store.resolve(name).files
            for sub in (name, f"{name}-0", f"{name}-1"):
                got = read_adapter_dir(tmp_path / "pulled" / sub)
                assert {n: sha256_hex(d) for n, d in got.items()} == want, sub
    assert [p.name for p in (tmp_path / "pulled").iterdir() if p.name.startswith(".")] == []


def test_publishes_to_one_store(hub_root: Path, tmp_path: Path) -> None:
    adapter = hub_root / "run" / "personalized" / "spam-0"
    fresh = tmp_path / "fresh-hub"  # the processes also race to create the store
    args = [(str(fresh), str(adapter), str(hub_root / "keys"))] * WORKERS
    assert _run_all(_publish, args) == []
    with HubStore(fresh) as store:
        assert store.list_versions("again") == list(range(1, WORKERS * ROUNDS + 1))
        assert store.verify("again") == []


def test_engines_share_one_cache_directory(hub_root: Path, tmp_path: Path) -> None:
    names = ["spam-0-shared", "news-0-shared", "tweets-0-shared"]
    cache = str(tmp_path / "cache")
    args = [(str(hub_root / "hub"), cache, names, i == 0) for i in range(2)]
    assert _run_all(_serve, args) == []
    with HubStore(hub_root / "hub") as store:
        for name in names:
            got = read_adapter_dir(Path(cache) / name / "v1")
            assert {n: sha256_hex(d) for n, d in got.items()} == store.resolve(name).files
