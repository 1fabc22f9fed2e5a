"""Hub bearer tokens with scopes; the hub keeps only each token's sha256.

A token is ``fnt_<id>_<secret>``: ``id`` names it in listings and
revocations, ``secret`` is 32 random bytes (URL-safe base64). The hub stores
the sha256 of the whole token and its scopes, never the token itself, so a
copy of the hub's database cannot be replayed as a credential.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from fednet.hub.db import tokens_table
from fednet.hub.manifest import utc_now_iso

__all__ = ["SCOPES", "TokenInfo", "TokenRegistry", "check_scopes", "hash_token"]

logger = logging.getLogger(__name__)

SCOPES: tuple[str, ...] = ("read", "publish", "heartbeat")
"""``read`` adapters and peers, ``publish`` adapters, ``heartbeat`` register peers."""


def hash_token(token: str) -> str:
    """Lowercase hex sha256 of ``token``'s UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scopes(scopes: object) -> tuple[str, ...]:
    """Return ``scopes`` (a comma-separated string or a sequence) as sorted names.

    Raises
    ------
    ValueError
        If it is empty or names a scope outside :data:`SCOPES`.
    """
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)  # type: ignore[call-overload]
    names = sorted({str(s).strip() for s in items if str(s).strip()})
    bad = [s for s in names if s not in SCOPES]
    if not names or bad:
        raise ValueError(
            f"token scopes must be a non-empty subset of {list(SCOPES)}, got {scopes!r}"
        )
    return tuple(names)


@dataclass(frozen=True)
class TokenInfo:
    """A stored token: its id, scopes and label (never the secret)."""

    token_id: str
    scopes: tuple[str, ...]
    label: str
    created: str


class TokenRegistry:
    """Tokens in the hub database (:data:`fednet.hub.db.tokens_table`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, scopes: object, *, label: str = "") -> str:
        """Create a token with ``scopes``; return it (shown once, stored hashed)."""
        names = check_scopes(scopes)
        token_id = secrets.token_hex(4)
        token = f"fnt_{token_id}_{secrets.token_urlsafe(32)}"
        with self._engine.begin() as conn:
            conn.execute(
                insert(tokens_table).values(
                    token_id=token_id,
                    sha256=hash_token(token),
                    scopes=",".join(names),
                    label=str(label),
                    created=utc_now_iso(),
                )
            )
        logger.info("created hub token %s with scopes %s", token_id, names)
        return token

    def scopes(self, token: str) -> frozenset[str]:
        """Scopes of ``token``; empty if it is unknown."""
        digest = hash_token(token)
        with self._engine.connect() as conn:
            rows = list(conn.execute(select(tokens_table.c.sha256, tokens_table.c.scopes)))
        for stored, scopes in rows:
            if hmac.compare_digest(stored, digest):
                return frozenset(scopes.split(","))
        return frozenset()

    def list(self) -> list[TokenInfo]:
        """Every token, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(tokens_table).order_by(tokens_table.c.created))
            return [
                TokenInfo(r.token_id, tuple(r.scopes.split(",")), r.label, r.created) for r in rows
            ]

    def revoke(self, token_id: str) -> bool:
        """Delete the token named ``token_id``; ``True`` if it existed."""
        with self._engine.begin() as conn:
            result = conn.execute(delete(tokens_table).where(tokens_table.c.token_id == token_id))
        return bool(result.rowcount)
