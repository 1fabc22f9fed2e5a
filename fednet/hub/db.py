"""SQL schema of the hub's metadata: adapter manifests, owner keys and peers.

Blobs live on disk; the database only points at them by sha256 through the
manifests. Any SQLAlchemy URL works; SQLite is the default.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

__all__ = [
    "metadata",
    "adapters_table",
    "owner_keys_table",
    "name_keys_table",
    "peers_table",
    "tokens_table",
    "make_engine",
]

metadata = MetaData()

adapters_table = Table(
    "adapters",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("manifest", Text, nullable=False),
    Column("created", String(40), nullable=False),
)
"""One row per published adapter version; ``manifest`` is its signed JSON."""

owner_keys_table = Table(
    "owner_keys",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("public_key", String(64), nullable=False),
    Column("registered", String(40), nullable=False),
)
"""Key pinned for each owner on first publish; replaced only by a signed rotation."""

name_keys_table = Table(
    "name_keys",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("public_key", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("registered", String(40), nullable=False),
)
"""Keys an adapter name was bound to: the first publish binds it, each signed
rotation adds the next (highest ``seq`` is current); every row has one owner."""

tokens_table = Table(
    "tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("scopes", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("created", String(40), nullable=False),
)
"""Bearer tokens: only the sha256 of each is stored, with its scopes."""

peers_table = Table(
    "peers",
    metadata,
    Column("peer_id", String(128), primary_key=True),
    Column("endpoint", Text, nullable=False),
    Column("base_model", Text, nullable=False),
    Column("adapters", Text, nullable=False),
    Column("registered", Float, nullable=False),
    Column("last_heartbeat", Float, nullable=False),
    Column("owner", String(128), nullable=False, server_default=""),
    Column("public_key", String(64), nullable=False, server_default=""),
    Column("last_signed", Float, nullable=False, server_default="0"),
    Column("registration", Text, nullable=False, server_default=""),
)
"""Inference peers; ``adapters`` is a JSON list of the adapter names served.
``public_key`` is the owner key the peer id is bound to; ``last_signed`` the
time of its newest signed registration or heartbeat (older ones are replays);
``registration`` the JSON of its newest signed registration, which readers verify."""


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` and make sure the tables exist.

    SQLite connections may be shared across threads (the HTTP service runs
    handlers in a thread pool); an in-memory SQLite database keeps one
    connection so every thread sees the same data.
    """
    parsed = make_url(url)
    kwargs: dict[str, object] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if parsed.database in (None, "", ":memory:"):
            kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

    metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Add the peer-binding columns to a hub database made before they existed."""
    from sqlalchemy import inspect, text

    have = {c["name"] for c in inspect(engine).get_columns("peers")}
    added = {
        "owner": "VARCHAR(128) NOT NULL DEFAULT ''",
        "public_key": "VARCHAR(64) NOT NULL DEFAULT ''",
        "last_signed": "FLOAT NOT NULL DEFAULT 0",
        "registration": "TEXT NOT NULL DEFAULT ''",
    }
    with engine.begin() as conn:
        for name, spec in added.items():
            if name not in have:
                conn.execute(text(f"ALTER TABLE peers ADD COLUMN {name} {spec}"))
