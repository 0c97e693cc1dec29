"""ticketlab: magnitude pruning and lottery tickets for PyTorch.

    from ticketlab import Masks, PruneSpec, prune, count, build_model, load_dataset
    from ticketlab import CRITERIA, MODELS   # registries: add a pruning criterion, a model
    from ticketlab import find_tickets       # IMP on your own model, data and loss (docs/your-model.md)
"""

from ticketlab.core.counting import count
from ticketlab.core.criteria import CRITERIA
from ticketlab.core.masked_update import MaskedUpdate
from ticketlab.core.masks import Masks, describe_density, prunable_names
from ticketlab.core.pruning import (
    LayerCollapseWarning,
    PruneSpec,
    density_after_rounds,
    kept_after_rounds,
    prune,
    random_like,
    rounds_to_reach,
)
from ticketlab.data import load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.models import MODELS, build_model

__all__ = [
    "CRITERIA", "MODELS", "LayerCollapseWarning", "MaskedUpdate", "Masks", "PruneSpec", "TicketlabError", "Tickets",
    "build_model", "count", "density_after_rounds", "describe_density", "find_tickets", "kept_after_rounds",
    "load_dataset", "prunable_names", "prune", "random_like", "rounds_to_reach",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    """`find_tickets` and `Tickets` load the training engine on first use: `import ticketlab` stays light."""
    if name in ("find_tickets", "Tickets"):
        import ticketlab.api

        return getattr(ticketlab.api, name)
    raise AttributeError(f"module 'ticketlab' has no attribute {name!r}")
