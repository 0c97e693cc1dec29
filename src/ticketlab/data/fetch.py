"""Download the official dataset files, verify their published checksums, unpack archives safely.

A file is downloaded to `<file>.part`; an interrupted download is continued with an HTTP Range request,
and only a file whose digest matches is renamed to its final name, so a final name always means a
verified file. The base URL can be replaced (`--mirror`, $TICKETLAB_MIRROR): the mirror must serve the
same file names directly under that URL.
"""

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ticketlab.core.files import file_errors
from ticketlab.errors import TicketlabError, unknown

CHUNK = 1 << 20
MAX_BYTES = 1 << 28  # a body of unknown size is read up to 256 MiB (the largest official file is 170 MB)
TIMEOUT = 60  # seconds without data before a download is given up


@dataclass(frozen=True)
class Remote:
    """Where a dataset's files come from and what they must hash to."""

    name: str
    url: str  # base URL; file F is fetched from url + F
    files: dict[str, str]  # file name -> published digest: 32 hex digits = MD5, 64 = SHA-256
    folder: str  # folder under --dir that the loader reads
    unpacked: tuple[str, ...] = ()  # if set, files are .tar.gz archives unpacking these files into `folder`
    sizes: dict[str, int] = field(default_factory=dict)  # file name -> size in bytes, where published


IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
# Official MD5s, as published by the dataset authors and listed by torchvision.
REMOTES = {
    "mnist": Remote("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/", dict(zip(IDX_NAMES, (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"), strict=True)), "mnist"),
    "fashion-mnist": Remote("fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                            dict(zip(IDX_NAMES, (
                                "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                                "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
                                strict=True)), "fashion-mnist"),
    "cifar10": Remote("cifar10", "https://www.cs.toronto.edu/~kriz/",
                      {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}, "cifar-10-batches-py",
                      unpacked=("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                                "test_batch", "batches.meta")),
}


def remote(name: str) -> Remote:
    if name not in REMOTES:
        raise unknown("downloadable dataset", name, REMOTES)
    return REMOTES[name]


def fetch(name: str, directory: str | os.PathLike, mirror: str | None = None, quiet: bool = False) -> Path:
    """Fetch dataset `name` into `directory` (official source, or `mirror`/$TICKETLAB_MIRROR); the folder
    `load_dataset(name, root=directory)` reads is returned."""
    return fetch_remote(remote(name), Path(directory), mirror, quiet)


def fetch_remote(source: Remote, directory: Path, mirror: str | None = None, quiet: bool = False) -> Path:
    base = base_url(mirror, source)
    directory = directory.expanduser()
    target = directory / source.folder
    if source.unpacked and unpacked(target, source.unpacked):
        return target  # the archive was verified before it was unpacked and deleted
    for file_name, digest in source.files.items():
        url = base.rstrip("/") + "/" + file_name
        if not source.unpacked:
            download(url, target / file_name, digest, quiet, source.sizes.get(file_name))
            continue
        archive = download(url, directory / file_name, digest, quiet, source.sizes.get(file_name))
        extract_tar(archive, directory)
        with file_errors(archive, "remove"):
            archive.unlink()
    if source.unpacked and not unpacked(target, source.unpacked):
        raise TicketlabError(f"{', '.join(source.files)} did not contain {source.folder}/ with "
                             f"{', '.join(source.unpacked)}")
    return target


def base_url(mirror: str | None, source: Remote) -> str:
    """The base URL: `mirror`, else $TICKETLAB_MIRROR, else the official one; an http(s) or file URL."""
    base, origin = mirror, "--mirror"
    if not base and os.environ.get("TICKETLAB_MIRROR"):
        base, origin = os.environ["TICKETLAB_MIRROR"], "$TICKETLAB_MIRROR"
    if not base:
        return source.url
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
        raise TicketlabError(f"{origin} {base!r} is not a URL; give a base URL such as https://host/path/ "
                             "(http, https or file)")
    return base


def unpacked(folder: Path, names: tuple[str, ...]) -> bool:
    return all((folder / name).is_file() for name in names)


def download(url: str, path: Path, digest: str, quiet: bool = False, size: int | None = None) -> Path:
    """Download `url` to `path` unless a verified copy is there, resuming `<path>.part`; verify `digest`. `size`:
    the file's known size in bytes (else the server's Content-Length), beyond which the body is not read."""
    if path.is_file() and file_digest(path, digest) == digest.lower():
        return path
    with file_errors(path.parent, "create the directory"):
        path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    receive(url, part, quiet or bool(os.environ.get("CI")), size)
    actual = file_digest(part, digest)
    with file_errors(part, "move into place"):
        if actual != digest.lower():
            part.unlink()
            raise TicketlabError(f"checksum mismatch for {path.name} from {url}: expected {digest.lower()}, got "
                                 f"{actual}; the download was deleted (corrupt transfer or wrong mirror)")
        os.replace(part, path)
    return path


def receive(url: str, part: Path, quiet: bool, size: int | None = None) -> None:
    """Append the rest of `url` to `part`, asking only for the missing bytes when `part` exists. The body is read up
    to the expected size (`size`, else Content-Length, else MAX_BYTES); a body that ends short keeps `part` for the
    next run to resume with Range."""
    with file_errors(part, "read"):
        offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "ticketlab", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT) as response:
            if offset and not resumes_at(response, offset):
                offset = 0  # the server ignored the Range header and sends the whole file
            length = response.headers.get("Content-Length")
            total = size or (offset + int(length) if length and length.isdigit() else None)
            got = offset + append_body(response, part, offset, total, quiet)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # asked past the end: the part file is already complete
            return
        raise TicketlabError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise TicketlabError(f"download of {url} failed: {getattr(e, 'reason', e)}; run the fetch again to "
                             f"resume from {part}") from None
    if total is not None and got < total:
        raise TicketlabError(f"download of {url} ended early, after {got:,} of {total:,} bytes; run the fetch again "
                             f"to resume from {part}")


def append_body(response, part: Path, offset: int, total: int | None, quiet: bool) -> int:
    """Write the response's body to `part` (appended at `offset`, else from scratch), at most up to `total` (or
    MAX_BYTES) bytes in all; returns the bytes written. Disk errors are one line naming `part`."""
    cap, written = (total or MAX_BYTES) - offset, 0
    with file_errors(part, "write"), open(part, "ab" if offset else "wb") as out, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[: -len(".part")],
        disable=quiet, file=sys.stderr, leave=False,
    ) as bar:
        while written < cap and (chunk := response.read(min(CHUNK, cap - written))):
            out.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return written


def resumes_at(response, offset: int) -> bool:
    """True when the response is a 206 whose Content-Range starts at `offset`."""
    content_range = response.headers.get("Content-Range", "")
    return response.status == 206 and content_range.startswith(f"bytes {offset}-")


def file_digest(path: Path, like: str) -> str:
    """MD5 or SHA-256 of `path`, whichever `like` (a hex digest) is."""
    algorithm = {32: "md5", 64: "sha256"}.get(len(like))
    if algorithm is None:
        raise ValueError(f"digest {like!r} is neither MD5 (32 hex) nor SHA-256 (64 hex)")
    hasher = hashlib.new(algorithm, usedforsecurity=False)  # MD5: what the datasets publish
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def extract_tar(archive: Path, directory: Path) -> None:
    """Unpack `archive` into `directory`, refusing absolute paths, `..`, links and devices.

    Members go to a temporary folder first and are moved into place file by file, so an interrupted
    extraction never leaves a half-written batch under its final name.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                parts = Path(member.name).parts
                if Path(member.name).is_absolute() or ".." in parts or not (member.isfile() or member.isdir()):
                    raise TicketlabError(f"unsafe member {member.name!r} in {archive}; refusing to extract")
            with tempfile.TemporaryDirectory(dir=directory, prefix=".extract-") as tmp:
                tar.extractall(tmp, members=members, filter="data")
                move_tree(Path(tmp), directory)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise TicketlabError(f"cannot extract {archive}: {e}") from None


def move_tree(source: Path, destination: Path) -> None:
    for item in sorted(source.rglob("*")):
        if item.is_file():
            target = destination / item.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(item, target)
