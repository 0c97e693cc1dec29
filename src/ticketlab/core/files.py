"""Atomic, code-free file IO: safetensors for tensors, JSON for metadata, and the one error boundary for files.

A write goes to a temporary file in the same directory, is fsynced, then renamed over the target, so a crash or a
full disk never leaves a half-written file behind (a failed write removes its temporary file). Every read and write
runs inside `file_errors`, which turns an OS error (full disk, read-only mount, a directory where a file should be,
no permission) or a decode error into one `TicketlabError` naming the file, the problem and what to do.
"""

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ticketlab.errors import TicketlabError

# what went wrong, and what to do about it, by errno
ADVICE = {
    errno.ENOSPC: ("no space left on the device", "free some space and run the command again"),
    errno.EDQUOT: ("disk quota exceeded", "free some space and run the command again"),
    errno.EROFS: ("the filesystem is read-only", "choose a writable directory"),
    errno.EACCES: ("permission denied", "check the permissions or choose another directory"),
    errno.EPERM: ("operation not permitted", "check the permissions or choose another directory"),
    errno.EISDIR: ("it is a directory", "give the path of a file"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "check the path"),
    errno.ENOENT: ("no such file or directory", "check the path"),
    errno.EEXIST: ("it already exists", "remove it or choose another path"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter path"),
    errno.EIO: ("input/output error", "check the disk"),
}


def describe_os_error(path, error: OSError, action: str) -> str:
    problem, advice = ADVICE.get(error.errno, (error.strerror or type(error).__name__, "check the path and the disk"))
    return f"cannot {action} {path}: {problem}; {advice}"


@contextmanager
def file_errors(path, action: str = "write"):
    """The error boundary of file IO on `path`: OS errors and decode errors become one `TicketlabError` line."""
    try:
        yield
    except TicketlabError:
        raise
    except OSError as e:
        raise TicketlabError(describe_os_error(path, e, action)) from None
    except UnicodeDecodeError as e:
        raise TicketlabError(f"cannot {action} {path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                             f"{e.start}); the file is corrupt or of another kind: replace or delete it") from None


def umask() -> int:
    """The process's umask: from /proc on Linux (thread-safe), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically, with the permissions a plain open() would give (0o666 & ~umask)."""
    path = Path(path)
    with file_errors(path, "write"):
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600 whatever the umask
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_json_atomic(path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_bytes(path, what: str = "read") -> bytes:
    """The bytes of `path`; a missing file, a directory or no permission is one TicketlabError line."""
    path = Path(path)
    if not path.exists():
        raise TicketlabError(f"file not found: {path}")
    with file_errors(path, what):
        return path.read_bytes()


def read_text(path, what: str = "read") -> str:
    """The UTF-8 text of `path`; OS and decode errors are one TicketlabError line."""
    data = read_bytes(path, what)
    with file_errors(path, what):
        return data.decode("utf-8")


def read_json(path) -> dict:
    text = read_text(path)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise TicketlabError(f"corrupt JSON file {path}: {e}; repair or delete it") from None


def stable_header(data: bytes) -> bytes:
    """Safetensors bytes with the `__metadata__` keys in sorted order: the library writes them in hash order, so
    identical runs would give different files. The header keeps its length (only the order changes)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n], object_pairs_hook=dict)
    if not header.get("__metadata__"):
        return data
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:  # not the library's compact encoding: keep its bytes rather than guess
        return data
    return data[:8] + text.ljust(n, b" ") + data[8 + n :]


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_bytes_atomic(path, stable_header(st_save(tensors, metadata=metadata)))


def load_tensors(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a safetensors file; corrupt or truncated files raise TicketlabError."""
    data = read_bytes(path)
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = header.get("__metadata__", {}) or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ValueError("metadata is not a mapping of strings")
    except (SafetensorError, ValueError, RuntimeError, AttributeError, OverflowError, MemoryError) as e:
        raise TicketlabError(f"corrupt or truncated tensor file {path}: {str(e)[:200]}; delete or replace it") from None
    return tensors, meta
