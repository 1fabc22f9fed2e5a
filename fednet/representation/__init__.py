"""The representation layer: maps between base models' embedding spaces, class prototypes.

- :mod:`~fednet.representation.maps`: Procrustes, ridge, MLP, mean-estimator and
  identity maps into the network space, with their fit quality and the
  choice among them on held-out public text;
- :mod:`~fednet.representation.space`: the network space and post-processing of
  released sketches;
- :mod:`~fednet.representation.corpus`: public text the maps are fitted on;
- :mod:`~fednet.representation.artifact`: maps as signed, versioned hub artifacts;
- :mod:`~fednet.representation.prototypes`: DP class prototypes (FedProto).
"""

from fednet.representation.maps import (
    EmbeddingMap,
    FitQuality,
    IdentityMap,
    MeanMap,
    MLPMap,
    ProcrustesMap,
    RidgeMap,
    available_map_methods,
    create_map,
    fit_quality,
    map_from_state,
    register_map_method,
    select_map,
)
from fednet.representation.space import DEFAULT_NETWORK_SPACE, NetworkSpace

__all__ = [
    "DEFAULT_NETWORK_SPACE",
    "EmbeddingMap",
    "FitQuality",
    "IdentityMap",
    "MLPMap",
    "MeanMap",
    "NetworkSpace",
    "ProcrustesMap",
    "RidgeMap",
    "available_map_methods",
    "create_map",
    "fit_quality",
    "map_from_state",
    "register_map_method",
    "select_map",
]
