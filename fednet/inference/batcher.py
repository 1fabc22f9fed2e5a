"""Micro-batching: requests that arrive together share one forward pass.

A worker thread takes the first waiting request, waits up to ``window_s`` for
more (up to ``max_batch_texts`` texts), attaches every adapter the batch needs
and runs one mixed-adapter forward pass through
:meth:`~fednet.inference.engine.AdapterEngine.classify_groups`. A request whose
adapter cannot be loaded fails alone; the rest of its batch is answered.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from fednet.hub.manifest import VersionSpec
from fednet.inference.engine import AdapterEngine, LoadedAdapter

__all__ = ["BatchResult", "MicroBatcher"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class BatchResult:
    """One request's share of a batch.

    Parameters
    ----------
    adapter : LoadedAdapter
        The adapter that answered.
    probabilities : torch.Tensor
        ``[n, labels]``.
    batch_requests : int
        Requests that shared the forward pass.
    batch_texts : int
        Texts in the forward pass.
    compute_s : float
        Seconds of the forward pass (adapter loading excluded).
    """

    adapter: LoadedAdapter
    probabilities: torch.Tensor
    batch_requests: int
    batch_texts: int
    compute_s: float


@dataclass(eq=False)
class _Request:
    texts: Sequence[str]
    adapter: str
    version: VersionSpec
    future: Future[BatchResult] = field(default_factory=Future)


class MicroBatcher:
    """Batch concurrent classification requests for one engine.

    Parameters
    ----------
    engine : AdapterEngine
        Runs the forward passes.
    window_s : float
        Seconds to wait for more requests after the first one.
    max_batch_texts : int
        Most texts per forward pass.
    """

    def __init__(
        self, engine: AdapterEngine, *, window_s: float = 0.002, max_batch_texts: int = 64
    ) -> None:
        self.engine = engine
        self.window_s = float(window_s)
        self.max_batch_texts = int(max_batch_texts)
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fednet-batcher", daemon=True)
        self._thread.start()
        self.batches = 0
        self.requests = 0

    def submit(
        self, texts: Sequence[str], adapter: str, version: VersionSpec = "latest"
    ) -> Future[BatchResult]:
        """Queue ``texts`` for ``adapter``; the future resolves to a :class:`BatchResult`."""
        if self._closed.is_set():
            raise RuntimeError("the batcher is closed")
        request = _Request(texts=list(texts), adapter=adapter, version=version)
        self._queue.put(request)
        return request.future

    def close(self) -> None:
        """Stop the worker after the queued requests."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _collect(self, first: _Request) -> list[_Request]:
        batch = [first]
        texts = len(first.texts)
        deadline = time.monotonic() + self.window_s
        while texts < self.max_batch_texts:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
            texts += len(item.texts)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._collect(first)
            try:
                self._process(batch)
            except Exception as e:  # never let the worker die
                logger.exception("batch of %d requests failed", len(batch))
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(e)

    def _process(self, batch: list[_Request]) -> None:
        ready: list[tuple[_Request, LoadedAdapter]] = []
        for request in batch:
            if not request.future.set_running_or_notify_cancel():
                continue
            try:
                ready.append((request, self.engine.ensure(request.adapter, request.version)))
            except Exception as e:
                logger.warning("cannot serve %s: %s", request.adapter, e)
                request.future.set_exception(e)
        if not ready:
            return
        # an adapter loaded late in the loop may have evicted an earlier one
        ready = [(r, self.engine.ensure(a.manifest.name, a.manifest.version)) for r, a in ready]
        started = time.perf_counter()
        probabilities = self.engine.classify_groups([(a, r.texts) for r, a in ready])
        compute = time.perf_counter() - started
        self.batches += 1
        self.requests += len(ready)
        texts = sum(len(r.texts) for r, _ in ready)
        for (request, adapter), probs in zip(ready, probabilities, strict=True):
            request.future.set_result(
                BatchResult(
                    adapter=adapter,
                    probabilities=probs,
                    batch_requests=len(ready),
                    batch_texts=texts,
                    compute_s=compute,
                )
            )
