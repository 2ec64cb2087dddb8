"""Score networks (``score(x, sigma) -> Tensor like x``) and the registry that builds them.

``build_network(section, channels=..., image_size=..., sigmas=...)`` builds a network from its
config section; ``ncsn.nets.io`` saves and loads self-describing model files.
"""

from ncsn.nets.registry import (
    NETWORKS,
    accepts_any_sigma,
    build_network,
    class_count,
    labelled,
    network_class,
    network_fields,
)

__all__ = ["NETWORKS", "accepts_any_sigma", "build_network", "class_count", "labelled",
           "network_class", "network_fields"]
