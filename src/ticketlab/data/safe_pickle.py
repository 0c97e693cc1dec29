"""A pickle reader that can only build plain containers and numpy arrays.

The official CIFAR-10 "python version" is a set of pickles, and unpickling runs whatever callable the
file names (`os.system`, `subprocess.Popen`, ...): a tampered download or a file from an untrusted mirror
would run code on load. `pickle.load` is therefore never used; this unpickler resolves only the few
globals that a numpy array and a dict of bytes, ints and lists need, and refuses everything else before
it is called.
"""

import io
import pickle
from pathlib import Path

import numpy as np

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


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def load_restricted(path: Path):
    """Unpickle `path` (bytes keys stay bytes, as in the official files) or raise TicketlabError naming it."""
    try:
        return RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise TicketlabError(f"refusing to load {path}: not a plain CIFAR pickle ({e})") from None
