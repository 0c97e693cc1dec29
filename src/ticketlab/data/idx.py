"""MNIST and Fashion-MNIST from the official IDX files in a user directory, gzipped or not.

IDX layout (big-endian): two zero bytes, a type byte (0x08 = unsigned byte), a byte with the number of
dimensions, one uint32 per dimension, then the raw values. Images are (N, 28, 28), labels (N,), 1 <= N <= 250,000.
"""

import gzip
import math
import os
import zlib
from pathlib import Path

import torch

from ticketlab.core.files import file_errors
from ticketlab.data.normalise import FASHION_MNIST_STATS, MNIST_STATS, scale_pixels, standardise
from ticketlab.data.source import DATASETS, Source
from ticketlab.data.splits import InMemory
from ticketlab.errors import TicketlabError

UNSIGNED_BYTE = 0x08
MAX_SAMPLES = 250_000  # per file: 4x the official 60,000, and a bound on what a lying header can make us allocate
CHUNK = 1 << 20
MAX_GZIP_RATIO = 1032  # deflate expands at most ~1032:1, so a gzip file cannot hold more than this times its size
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Folders searched under root, so both `--dir D` of `ticketlab data fetch` and torchvision's layout work.
SUBDIRS = {"mnist": ("mnist", "MNIST/raw"), "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw")}


def parse_header(head: bytes, path: Path, ndim: int) -> list[int]:
    """The shape an IDX header declares; a bad magic number or a short header raises TicketlabError naming `path`."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != UNSIGNED_BYTE or head[3] != ndim:
        raise TicketlabError(f"{path} is not an IDX file of {ndim}-d unsigned bytes (bad magic number "
                             f"{head[:4].hex() or 'empty'}; want 000008{ndim:02x})")
    if len(head) < 4 + 4 * ndim:
        raise TicketlabError(f"{path} is truncated: header cut short")
    return [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]


def check_shape(shape: list[int], path: Path) -> int:
    """The number of values of an MNIST-like file of this shape: samples of 28x28 images or labels, at least one
    and at most MAX_SAMPLES."""
    if len(shape) == 3 and shape[1:] != [28, 28]:
        raise TicketlabError(f"{path} holds images of {shape[1]}x{shape[2]}; MNIST and Fashion-MNIST are 28x28")
    if shape[0] == 0:
        raise TicketlabError(f"{path} holds no samples")
    if shape[0] > MAX_SAMPLES:
        raise TicketlabError(f"{path} claims {shape[0]:,} samples, more than the {MAX_SAMPLES:,} a file may hold")
    return math.prod(shape)


def parse_idx(data: bytes, path: Path, ndim: int) -> torch.Tensor:
    """Decode one IDX file; any mismatch with the header raises TicketlabError naming `path`."""
    shape = parse_header(data[: 4 + 4 * ndim], path, ndim)
    header, count = 4 + 4 * ndim, check_shape(shape, path)
    if len(data) != header + count:
        raise TicketlabError(f"{path} is truncated or corrupt: {len(data) - header} data bytes, header "
                             f"says {count} for shape {tuple(shape)}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header, count=count).view(shape)


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """One IDX file, gzipped or not. The header is checked against the file's size before anything is allocated,
    and a gzip stream is decompressed only up to what the header declares (plus one byte, to notice more)."""
    with file_errors(path, "read"), open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        gz = raw.read(2) == b"\x1f\x8b"  # gzip magic: decompress whatever the file is called
        raw.seek(0)
        try:
            stream = gzip.GzipFile(fileobj=raw) if gz else raw
            head = stream.read(4 + 4 * ndim)
            shape = parse_header(head, path, ndim)
            count = check_shape(shape, path)
            most = size * MAX_GZIP_RATIO if gz else size - len(head)
            if count > most:
                raise TicketlabError(f"{path} is truncated or corrupt: its header says {count:,} values for shape "
                                     f"{tuple(shape)}, more than its {size:,} bytes can hold")
            body = read_at_most(stream, count + 1)
        except (OSError, EOFError, zlib.error) as e:
            raise TicketlabError(f"{path} is a truncated or corrupt gzip file: {e}") from None
    return parse_idx(head + body, path, ndim)


def read_at_most(stream, limit: int) -> bytes:
    """Up to `limit` bytes of `stream`, read in chunks: memory grows with the data there is, not with `limit`."""
    out = bytearray()
    while len(out) < limit and (chunk := stream.read(min(CHUNK, limit - len(out)))):
        out += chunk
    return bytes(out)


def find_file(folders: list[Path], stem: str, name: str) -> Path:
    """`stem` or `stem.gz` in the first folder that has it (the last folder is root itself); else an error
    saying how to fetch it."""
    for folder in folders:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    root = folders[-1]
    raise TicketlabError(f"missing {stem}[.gz] for dataset {name!r} in {root} or {folders[0]}; fetch it with "
                         f"`ticketlab data fetch {name} --dir {root}`")


def load_split(folders: list[Path], name: str, split: str, stats) -> InMemory:
    images_stem, labels_stem = IDX_FILES[split]
    images_path, labels_path = find_file(folders, images_stem, name), find_file(folders, labels_stem, name)
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise TicketlabError(f"{images_path} has {images.shape[0]} images but {labels_path} has "
                             f"{labels.shape[0]} labels")
    if labels.numel() and int(labels.max()) > 9:
        raise TicketlabError(f"{labels_path} has label {int(labels.max())}; allowed: 0..9")
    x = standardise(scale_pixels(images).unsqueeze(1), stats)
    return InMemory(x, labels.to(torch.int64))


def load_idx_dataset(root: Path, name: str, stats) -> Source:
    folders = [root / sub for sub in SUBDIRS[name]] + [root]
    train, test = (load_split(folders, name, split, stats) for split in ("train", "test"))
    return Source(train, test, num_classes=10, val_size=5000)


@DATASETS.register("mnist")
def mnist(root: Path) -> Source:
    """MNIST IDX files: 60,000 train / 10,000 test 28x28 digits."""
    return load_idx_dataset(root, "mnist", MNIST_STATS)


@DATASETS.register("fashion-mnist")
def fashion_mnist(root: Path) -> Source:
    """Fashion-MNIST IDX files: 60,000 train / 10,000 test 28x28 clothing images."""
    return load_idx_dataset(root, "fashion-mnist", FASHION_MNIST_STATS)
