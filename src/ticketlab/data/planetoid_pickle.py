"""A restricted unpickler for the Planetoid pickles (ticketlab.data.planetoid): numpy arrays, plain containers, and
inert stand-ins for scipy sparse matrices. Arrays are bounded by the pickle's size (ticketlab.data.safe_pickle)."""

import pickle
from pathlib import Path

import numpy as np

from ticketlab.data.safe_pickle import UNPICKLING_ERRORS, unpickle
from ticketlab.errors import TicketlabError


class SparseState:
    """What a pickled scipy sparse matrix becomes here: its attribute dict, nothing callable."""

    layout = ""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected {self.layout} matrix state {type(state).__name__}")
        self.state = state


LAYOUTS = {layout: type(f"{layout.capitalize()}State", (SparseState,), {"layout": layout})
           for layout in ("csr", "csc", "coo", "lil")}
SPARSE_CLASSES = {
    (f"scipy.sparse{private}{layout}", f"{layout}_{kind}"): cls
    for layout, cls in LAYOUTS.items() for private in (".", "._") for kind in ("matrix", "array")
}


def plain_dict(default_factory=None) -> dict:
    """defaultdict(list) -> dict: only the mapping matters, the factory is not kept."""
    if default_factory not in (None, list):
        raise pickle.UnpicklingError(f"refusing defaultdict with factory {default_factory!r}")
    return {}


def reconstructor(cls, base, state):
    """copy_reg._reconstructor of protocol 0/1 pickles, for the sparse stand-ins only."""
    if cls not in LAYOUTS.values() or base is not object or state is not None:
        raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")
    return cls.__new__(cls)


NUMPY_SCALAR = np.float64(0).__reduce__()[0]


def scalar(dtype, *args):
    """numpy's scalar rebuilder, for number-sized types only (a dtype of a huge subarray would allocate it)."""
    if not isinstance(dtype, np.dtype) or dtype.itemsize > 64 or dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing a numpy scalar of type {dtype!r}")
    return NUMPY_SCALAR(dtype, *args)


PLANETOID_ALLOWED = {  # beside safe_pickle's plain containers and numpy arrays
    **SPARSE_CLASSES,
    ("collections", "defaultdict"): plain_dict,
    ("copy_reg", "_reconstructor"): reconstructor, ("copyreg", "_reconstructor"): reconstructor,
    ("numpy.core.multiarray", "scalar"): scalar, ("numpy._core.multiarray", "scalar"): scalar,
    **{(module, t.__name__): t for module in ("builtins", "__builtin__") for t in (float, tuple, object)},
}


def load_pickle(path: Path):
    """Python 2 pickles hold numpy buffers as str: latin1 maps them back to the original bytes."""
    try:
        return unpickle(path, PLANETOID_ALLOWED, encoding="latin1")
    except TicketlabError:
        raise
    except UNPICKLING_ERRORS as e:
        raise TicketlabError(f"refusing to load {path}: not a Planetoid pickle ({str(e)[:200]})") from None
