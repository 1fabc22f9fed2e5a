"""Joint inference: peers serving hub adapters, and asking the network.

- :class:`AdapterEngine`: one base model, hot-swapped LoRA adapters (LRU),
  mixed-adapter batches;
- :class:`PeerServer` / :func:`create_peer_app`: ``POST /v1/classify`` with
  micro-batching, registered with the hub and heartbeating;
- :class:`Network` / :func:`ask`: route a query, call peers (or run the
  adapters locally) and combine the answers (:class:`Cascade`,
  :class:`Ensemble`), with provenance.
"""

from fednet.inference.ask import FrozenEncoder, Network, ask, check_query
from fednet.inference.batcher import BatchResult, MicroBatcher
from fednet.inference.combine import (
    Answer,
    Cascade,
    Combiner,
    Ensemble,
    PeerCall,
    available_combiners,
    create_combiner,
    register_combiner,
)
from fednet.inference.config import COMBINER_MODES, AskConfig, PeerConfig
from fednet.inference.engine import AdapterEngine, AdapterSource, LoadedAdapter
from fednet.inference.peer import create_peer_app
from fednet.inference.server import PeerServer, owned_adapters
from fednet.inference.transport import Backend, LocalBackend, PeerClient, PeerReply, parse_reply

__all__ = [
    "COMBINER_MODES",
    "AdapterEngine",
    "AdapterSource",
    "Answer",
    "AskConfig",
    "Backend",
    "BatchResult",
    "Cascade",
    "Combiner",
    "Ensemble",
    "FrozenEncoder",
    "LoadedAdapter",
    "LocalBackend",
    "MicroBatcher",
    "Network",
    "PeerCall",
    "PeerClient",
    "PeerConfig",
    "PeerReply",
    "PeerServer",
    "ask",
    "available_combiners",
    "check_query",
    "create_combiner",
    "create_peer_app",
    "owned_adapters",
    "parse_reply",
    "register_combiner",
]
