"""MNIST and Fashion-MNIST from the official IDX files in a user directory, gzipped or not.

IDX layout (big-endian): two zero bytes, a type byte (0x08 = unsigned byte), a byte with the number of
dimensions, one uint32 per dimension, then the raw values. Images are (N, 28, 28), labels (N,).
"""

import gzip
import zlib
from pathlib import Path

import torch

from ticketlab.data.normalise import FASHION_MNIST_STATS, MNIST_STATS, scale_pixels, standardise
from ticketlab.data.source import DATASETS, Source
from ticketlab.data.splits import InMemory
from ticketlab.errors import TicketlabError

UNSIGNED_BYTE = 0x08
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Folders searched under root, so both `--dir D` of `ticketlab data fetch` and torchvision's layout work.
SUBDIRS = {"mnist": ("mnist", "MNIST/raw"), "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw")}


def parse_idx(data: bytes, path: Path, ndim: int) -> torch.Tensor:
    """Decode one IDX file; any mismatch with the header raises TicketlabError naming `path`."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != UNSIGNED_BYTE or data[3] != ndim:
        raise TicketlabError(f"{path} is not an IDX file of {ndim}-d unsigned bytes (bad magic number "
                             f"{data[:4].hex() or 'empty'}; want 000008{ndim:02x})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise TicketlabError(f"{path} is truncated: header cut short")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    count = 1
    for size in shape:
        count *= size
    if len(data) != header + count:
        raise TicketlabError(f"{path} is truncated or corrupt: {len(data) - header} data bytes, header "
                             f"says {count} for shape {tuple(shape)}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header, count=count).view(shape)


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic: decompress whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise TicketlabError(f"{path} is a truncated or corrupt gzip file: {e}") from None
    return parse_idx(raw, path, ndim)


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
