"""The network console: server-rendered pages mounted on the hub's app at ``/ui``.

======================  ============================================================
``GET /ui``             adapters (manifests, owners, key fingerprints, verification),
                        ε spent per owner against the budget, peers up or down with
                        their latency, and the latest benchmark report's plots
``GET /ui/ask?q=...``   routes the query with :mod:`fednet.routing`, asks through
                        :class:`fednet.inference.Network` and shows the answer, the
                        router's decision and the provenance of every call
``GET /ui/plots/NAME``  one PNG that the latest benchmark report lists, nothing else
``GET /ui/console.css`` the style sheet
======================  ============================================================

The pages are Jinja2 templates with autoescaping on, so every name, manifest
field, query and error message reaches the browser as text. They run no
JavaScript, and their ``Content-Security-Policy`` allows none.

The hub's own package never imports this module (:mod:`fednet.hub` sits below
routing and inference): ``fednet hub serve`` mounts it through
:func:`fednet.hub.serve`'s ``mount`` hook.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined

from fednet.console.reports import latest_report
from fednet.console.state import adapter_views, budget_views, peer_views, reader_copy
from fednet.errors import FednetError
from fednet.hub.store import HubStore
from fednet.hub.trust import TrustStore
from fednet.inference.ask import Network, check_query
from fednet.inference.combine import Answer, available_combiners
from fednet.inference.config import AskConfig

__all__ = ["SECURITY_HEADERS", "Console", "console_mount", "mount_console"]

logger = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Sent with every console response: no script runs, nothing loads from elsewhere."""

_TEMPLATES = Environment(
    loader=PackageLoader("fednet.console", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}"


_TEMPLATES.filters["num"] = _number


class Console:
    """The console's state between requests: the hub, the reader's trust and a network.

    Parameters
    ----------
    store : HubStore
        The hub the console runs beside.
    trust : TrustStore
        The reader's trust store. The console verifies against an in-memory
        copy (:func:`~fednet.console.state.reader_copy`): looking never pins.
    bench_dir : str or Path
        Where ``fednet bench`` writes its reports.
    epsilon_budget : float
        The ε budget each owner's spend is shown against (``math.inf``: none).
        Budgets are not part of the signed manifests; this is the console's.
    local : bool
        Answer queries by running the chosen adapters in this process instead
        of calling peers.
    ask_config : AskConfig, optional
        Router, combiner and limits of the query box.
    cache_dir : str or Path, optional
        Adapter cache of local mode.
    probe_timeout_s : float
        Timeout of each peer's health probe; ``0`` turns probing off.
    """

    def __init__(
        self,
        store: HubStore,
        *,
        trust: TrustStore,
        bench_dir: str | Path = "bench/results",
        epsilon_budget: float = 8.0,
        local: bool = False,
        ask_config: AskConfig | None = None,
        cache_dir: str | Path | None = None,
        probe_timeout_s: float = 1.0,
    ) -> None:
        if not isinstance(store, HubStore):
            raise TypeError(f"`store` must be a HubStore, got {type(store).__name__}")
        if (
            isinstance(epsilon_budget, bool)
            or not isinstance(epsilon_budget, int | float)
            or not epsilon_budget > 0
        ):
            raise ValueError(f"`epsilon_budget` must be > 0, got {epsilon_budget!r}")
        if isinstance(probe_timeout_s, bool) or not isinstance(probe_timeout_s, int | float):
            raise TypeError(f"`probe_timeout_s` must be a number, got {probe_timeout_s!r}")
        if probe_timeout_s < 0:
            raise ValueError(f"`probe_timeout_s` must be >= 0, got {probe_timeout_s!r}")
        self.store = store
        self.trust = reader_copy(trust)
        self.trust_source = str(trust.path) if trust.path else "(in memory)"
        self.bench_dir = Path(bench_dir)
        self.epsilon_budget = float(epsilon_budget)
        self.local = bool(local)
        self.ask_config = ask_config or AskConfig()
        self.cache_dir = cache_dir
        self.probe_timeout_s = float(probe_timeout_s)
        self._network: Network | None = None
        self._lock = threading.Lock()

    @property
    def network(self) -> Network:
        """The network queries go through, built on first use."""
        with self._lock:
            if self._network is None:
                self._network = Network(
                    self.store,
                    config=self.ask_config,
                    local=self.local,
                    cache_dir=self.cache_dir,
                    trust=self.trust,
                )
            return self._network

    def close(self) -> None:
        """Close the network's peer connections."""
        with self._lock:
            if self._network is not None:
                self._network.close()
                self._network = None

    # -- pages ----------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """Everything ``/ui`` shows, computed now."""
        hub_error = None
        try:
            manifests = self.store.list()
            versions = {m.name: len(self.store.list_versions(m.name)) for m in manifests}
        except (FednetError, ValueError, TypeError) as e:  # a damaged row: say so, show the rest
            logger.warning("console cannot read the hub's manifests: %s", e)
            manifests, versions = [], {}
            hub_error = f"{type(e).__name__}: {e}"
        adapters = adapter_views(manifests, self.trust, versions)
        latencies = dict(self._network.router.latencies) if self._network else {}
        report, report_note = latest_report(self.bench_dir)
        return {
            "hub_error": hub_error,
            "adapters": adapters,
            "budgets": budget_views(adapters, budget=self.epsilon_budget),
            "budget": self.epsilon_budget,
            "peers": peer_views(
                self.store.peers(),
                self.trust,
                now=time.time(),
                probe_timeout_s=self.probe_timeout_s,
                router_latencies=latencies,
            ),
            "peer_timeout_s": self.store.peer_timeout,
            "probe_timeout_s": self.probe_timeout_s,
            "report": report,
            "report_note": report_note,
        }

    def ask(self, text: str, *, mode: str, k: int | None) -> Answer:
        """Route and answer ``text`` (see :meth:`fednet.inference.Network.ask`)."""
        return self.network.ask(text, mode=mode, k=k)

    def render(self, template: str, **context: Any) -> str:
        """Render one page with the context every page shares."""
        return _TEMPLATES.get_template(template).render(
            hub_root=str(self.store.root),
            trust_source=self.trust_source,
            pinned_owners=len(self.trust.as_mapping()),
            local=self.local,
            modes=available_combiners(),
            default_mode=self.ask_config.mode,
            max_query_chars=self.ask_config.max_query_chars,
            **context,
        )


def _page(html: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _not_found(what: str) -> Response:
    return Response(
        f"not found: {what}\n", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS
    )


def mount_console(app: FastAPI, store: HubStore, **options: Any) -> Console:
    """Add the console's routes under ``/ui`` to a hub ``app`` serving ``store``.

    Parameters
    ----------
    app : FastAPI
        The hub's application (:func:`fednet.hub.create_app`).
    store : HubStore
        The store it serves.
    **options
        Passed to :class:`Console`; ``trust`` defaults to the reader's trust
        store file (:func:`fednet.hub.trust.default_trust_path`).

    Returns
    -------
    Console
        Close it when the app stops.
    """
    options.setdefault("trust", TrustStore())
    console = Console(store, **options)

    @app.get("/ui", response_class=HTMLResponse, include_in_schema=False)
    def overview() -> HTMLResponse:
        return _page(console.render("overview.html", **console.overview()))

    @app.get("/ui/ask", response_class=HTMLResponse, include_in_schema=False)
    def ask(
        q: str | None = Query(default=None),
        mode: str | None = Query(default=None),
        k: str | None = Query(default=None),
    ) -> HTMLResponse:
        mode = mode or console.ask_config.mode
        form = {"query": q or "", "mode": mode, "k": k or ""}
        if q is None:
            return _page(console.render("ask.html", answer=None, error=None, **form))
        status, error, answer = 200, None, None
        try:
            check_query(q, max_chars=console.ask_config.max_query_chars)
            if mode not in available_combiners():
                raise ValueError(
                    f"unknown mode {mode!r}; valid: {', '.join(available_combiners())}"
                )
            top_k = None
            if k:
                if not k.isdecimal() or not 1 <= int(k) <= 64:
                    raise ValueError(f"`k` must be a whole number in 1..64, got {k!r}")
                top_k = int(k)
        except (TypeError, ValueError) as e:
            status, error = 400, str(e)
        else:
            try:
                answer = console.ask(q, mode=mode, k=top_k)
            except (FednetError, ValueError, OSError) as e:
                logger.warning("console query failed: %s", e)
                status, error = 503, f"{type(e).__name__}: {e}"
        page = console.render("ask.html", answer=answer, error=error, **form)
        return _page(page, status)

    @app.get("/ui/plots/{filename}", include_in_schema=False)
    def plot(filename: str) -> Response:
        report, _ = latest_report(console.bench_dir)
        if report is None or filename not in report.plots.values():
            return _not_found("a plot of the latest benchmark report")
        return FileResponse(
            report.path.parent / filename, media_type="image/png", headers=SECURITY_HEADERS
        )

    @app.get("/ui/console.css", include_in_schema=False)
    def css() -> Response:
        text = resources.files("fednet.console").joinpath("console.css").read_text("utf-8")
        return Response(text, media_type="text/css", headers=SECURITY_HEADERS)

    return console


def console_mount(
    *,
    trust_file: str | Path | None = None,
    epsilon_budget: float | None = None,
    **options: Any,
) -> Callable[[FastAPI, HubStore], Callable[[], None]]:
    """A ``mount`` hook for :func:`fednet.hub.serve` that adds the console.

    Parameters
    ----------
    trust_file : str or Path, optional
        The reader's trust store (default ``$FEDNET_TRUST_FILE`` or
        ``~/.config/fednet/trust.json``); read when the hub starts.
    epsilon_budget : float, optional
        Default: the privacy preset's default, ``privacy.epsilon-budget``.
    **options
        The rest of :class:`Console`'s options.
    """
    from fednet.privacy.config import PrivacyConfig

    budget = PrivacyConfig().epsilon_budget if epsilon_budget is None else epsilon_budget

    def mount(app: FastAPI, store: HubStore) -> Callable[[], None]:
        trust = TrustStore(trust_file)
        console = mount_console(app, store, trust=trust, epsilon_budget=budget, **options)
        logger.info("network console at /ui (verifying against %s)", console.trust_source)
        return console.close

    return mount
