"""A ClientApp mod that records every message leaving a client, for audits."""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord


class WireRecorder:
    """Writes each outgoing reply's records to ``out_dir`` (one pickle per message).

    ``incoming`` holds the arrays the server sent with the message: what an
    adversary on the server side knows anyway.
    """

    def __init__(self, out_dir: Path, tag_client: Any = None) -> None:
        self.out_dir = str(out_dir)
        self.cfg = tag_client  # a FederationConfig: record which client replied

    def __call__(self, msg: Any, context: Any, call_next: Any) -> Any:
        reply = call_next(msg, context)
        entry: dict[str, Any] = {
            "message_type": msg.metadata.message_type,
            "error": reply.error.reason if reply.has_error() else None,
            "records": {},
            "client": None,
            "incoming": {
                name: {k: a.numpy() for k, a in rec.items()}
                for name, rec in msg.content.items()
                if isinstance(rec, ArrayRecord)
            },
        }
        if self.cfg is not None:
            from fednet.federation.client import resolve_client

            entry["client"] = resolve_client(self.cfg, dict(context.node_config)).id
        if not reply.has_error():
            for name, rec in reply.content.items():
                if isinstance(rec, ArrayRecord):
                    entry["records"][name] = ("arrays", {k: a.numpy() for k, a in rec.items()})
                elif isinstance(rec, MetricRecord):
                    entry["records"][name] = ("metrics", dict(rec))
                elif isinstance(rec, ConfigRecord):
                    entry["records"][name] = ("config", json.loads(json.dumps(dict(rec))))
                else:
                    entry["records"][name] = (type(rec).__name__, None)
        path = Path(self.out_dir) / f"{uuid.uuid4().hex}.pkl"
        path.write_bytes(pickle.dumps(entry))
        return reply


def load_wire(out_dir: Path) -> list[dict[str, Any]]:
    return [pickle.loads(p.read_bytes()) for p in sorted(Path(out_dir).glob("*.pkl"))]
