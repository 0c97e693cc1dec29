"""A pickle reader that can only build plain containers and numpy arrays.

The official CIFAR-10 "python version" is a set of pickles, and unpickling runs whatever callable the
file names (`os.system`, `subprocess.Popen`, ...): a tampered download or a file from an untrusted mirror
would run code on load. `pickle.load` is therefore never used; this unpickler resolves only the few
globals that a numpy array and a dict of bytes, ints and lists need, and refuses everything else before
it is called.
"""

import io
import math
import pickle
from pathlib import Path

import numpy as np

from ticketlab.core.files import read_bytes
from ticketlab.errors import TicketlabError


def latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Python 3 writes `bytes` in protocol-2 pickles as `_codecs.encode(text, 'latin1')`; allow only that."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]  # numpy's array rebuilder, whatever module it lives in now

ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): RECONSTRUCT,  # written by numpy < 2 (the real CIFAR files)
    ("numpy._core.multiarray", "_reconstruct"): RECONSTRUCT,  # written by numpy >= 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): latin1_encode,
} | {(module, t.__name__): t for module in ("builtins", "__builtin__") for t in (dict, list, bytes, str, int)}


class BoundedArray(np.ndarray):
    """What a pickled array is rebuilt as: its state is checked against the pickle's size before numpy allocates
    it, so a few bytes claiming an array of 10**14 elements are refused instead of exhausting memory."""

    limit = 0  # set on the per-load subclass: the pickle's size in bytes

    def __setstate__(self, state):
        shape, dtype = (state[1], state[2]) if len(state) == 5 else (state[0], state[1])
        check_size(shape, getattr(dtype, "itemsize", 1), self.limit)
        super().__setstate__(state)


def check_size(shape, itemsize: int, limit: int) -> None:
    """Refuse an array larger than the pickle could hold: more elements than its bytes, or more bytes than 8 per."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(s, int) and s >= 0 for s in shape):
        raise pickle.UnpicklingError(f"bad array shape {shape!r}")
    count = math.prod(shape)
    if count > limit or count * max(itemsize, 1) > 8 * limit:
        raise pickle.UnpicklingError(f"an array of shape {shape} cannot come from a pickle of {limit} bytes")


def bounded_globals(limit: int) -> dict:
    """The allowed globals, with the ones that allocate checked against `limit` (the pickle's size in bytes)."""
    array = type("BoundedArray", (BoundedArray,), {"limit": limit})

    def reconstruct(cls, shape, typecode):
        if cls is not new_array and cls is not np.ndarray:
            raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")
        check_size(shape, 1, limit)
        return RECONSTRUCT(array, shape, typecode)

    def new_array(shape, dtype=float, *args, **kwargs):
        check_size(shape, np.dtype(dtype).itemsize, limit)
        return np.ndarray.__new__(array, shape, dtype, *args, **kwargs)

    def plain_bytes(*args):
        if args and isinstance(args[0], int):  # bytes(n) allocates n zero bytes: never in a data pickle
            raise pickle.UnpicklingError("refusing bytes(<int>)")
        return bytes(*args)

    modules = ("numpy.core.multiarray", "numpy._core.multiarray")
    return {**ALLOWED, **{(m, "_reconstruct"): reconstruct for m in modules}, ("numpy", "ndarray"): new_array,
            **{(m, "bytes"): plain_bytes for m in ("builtins", "__builtin__")}}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only `allowed` globals (default: ALLOWED, bounded by the pickle's size `limit`)."""

    def __init__(self, file, *, limit: int, allowed: dict | None = None, **kwargs):
        super().__init__(file, **kwargs)
        self.allowed = {**bounded_globals(limit), **(allowed or {})}

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def unpickle(path: Path, allowed: dict | None = None, encoding: str = "bytes"):
    """Unpickle `path` with the restricted unpickler; raises pickle and decoding errors as they come."""
    data = read_bytes(path)
    return RestrictedUnpickler(io.BytesIO(data), limit=len(data), allowed=allowed, encoding=encoding).load()


UNPICKLING_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                     MemoryError, OverflowError, RecursionError)


def load_restricted(path: Path):
    """Unpickle `path` (bytes keys stay bytes, as in the official files) or raise TicketlabError naming it."""
    try:
        return unpickle(path)
    except TicketlabError:
        raise
    except UNPICKLING_ERRORS as e:
        raise TicketlabError(f"refusing to load {path}: not a plain CIFAR pickle ({str(e)[:200]})") from None
