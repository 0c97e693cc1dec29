"""GLUE MNLI from its TSV files in a user directory, tokenised with the model's own tokenizer (local files only).

    <root>/ or <root>/MNLI/:  train.tsv  dev_matched.tsv  dev_mismatched.tsv     (GLUE's MNLI.zip, unpacked)

Columns are found by the header (index, promptID, pairID, genre, the four parses, sentence1, sentence2, label1...,
gold_label); fields are tab-separated with no quoting, as GLUE writes them. Labels: entailment 0, neutral 1,
contradiction 2; rows whose gold label is '-' (no annotator consensus) are skipped. Pairs are tokenised to at most
128 tokens (longest-first truncation, padded on the right) into x = (N, 3, 128) int64: input_ids, attention_mask,
token_type_ids. `mnli` tests on dev_matched, `mnli-mm` on dev_mismatched; validation is carved from train.

Tokenising the 393K training pairs takes about a minute, so the tensors are cached as safetensors under a key made
of the file's and the tokenizer's contents: another tokenizer or an edited file gives another cache entry.
"""

import hashlib
import json
from importlib.metadata import version
from pathlib import Path

import torch

from ticketlab.core.files import file_errors, read_text
from ticketlab.data.cache import cached_tensors
from ticketlab.data.source import DATASETS, Source
from ticketlab.data.splits import InMemory
from ticketlab.errors import TicketlabError

LABELS = ("entailment", "neutral", "contradiction")
FILES = ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv")
COLUMNS = ("sentence1", "sentence2", "gold_label")
MAX_LENGTH = 128
VAL_SIZE = 10_000  # held out from train; dev_matched (9,815 pairs) stays the test set
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")
GET_GLUE = ("get GLUE's MNLI.zip from https://gluebenchmark.com/tasks (or export the 'nyu-mll/glue' 'mnli' "
            "configuration of the Hugging Face datasets hub to these TSV files)")
ENCODE_CHUNK = 20_000  # pairs per tokenizer call: bounds the memory of the intermediate Python lists


def mnli_dir(root: Path, needed: tuple[str, ...], name: str) -> Path:
    """The directory holding the TSV files: `root` itself or its MNLI/ subdirectory."""
    folder = root / "MNLI" if not (root / needed[0]).is_file() and (root / "MNLI").is_dir() else root
    for file in needed:
        if not (folder / file).is_file():
            raise TicketlabError(f"missing {folder / file} for dataset {name!r}: put MNLI's {', '.join(FILES)} in "
                                 f"{root} (or set data.root=DIR); {GET_GLUE}")
    return folder


def read_tsv(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """(sentence1s, sentence2s, labels) of one GLUE MNLI file."""
    lines = read_text(path).splitlines()  # not UTF-8, or unreadable: one line naming the file
    header = lines[0].split("\t") if lines else []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise TicketlabError(f"{path} is not a GLUE MNLI file: its header lacks the column {missing[0]!r}")
    at = [header.index(c) for c in COLUMNS]
    label_of = {name: i for i, name in enumerate(LABELS)}
    first, second, labels = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise TicketlabError(f"{path} line {number} has {len(fields)} tab-separated fields, the header "
                                 f"{len(header)}")
        s1, s2, gold = (fields[i] for i in at)
        if gold == "-":
            continue
        if gold not in label_of:
            raise TicketlabError(f"{path} line {number}: gold_label {gold!r} is not one of {', '.join(LABELS)}")
        first.append(s1)
        second.append(s2)
        labels.append(label_of[gold])
    return first, second, torch.tensor(labels, dtype=torch.int64)


def load_tokenizer(directory, name: str):
    """The tokenizer saved in a local directory (transformers' AutoTokenizer, offline)."""
    if directory is None:
        raise TicketlabError(f"dataset {name!r} needs the model's tokenizer: set model.path=DIR (a Hugging Face model "
                             f"directory holding its tokenizer) or data.tokenizer=DIR")
    from ticketlab.models.hf import quiet_transformers, require_transformers

    transformers = require_transformers()
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise TicketlabError(f"tokenizer directory {path} does not exist")
    # Without these files transformers quietly builds an empty tokenizer that maps every word to [UNK].
    if not any((path / file).is_file() for file in TOKENIZER_FILES):
        raise TicketlabError(f"{path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save the model's "
                             f"tokenizer there with tokenizer.save_pretrained or set data.tokenizer=DIR")
    try:
        with quiet_transformers():
            return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise TicketlabError(f"cannot load the tokenizer in {path}: {str(e).splitlines()[0]}") from None


def encode_pairs(tokenizer, first: list[str], second: list[str], max_length: int) -> torch.Tensor:
    """(N, 3, max_length) int64: input_ids, attention_mask, token_type_ids (zeros when the model has none)."""
    parts = []
    for i in range(0, len(first), ENCODE_CHUNK):
        enc = tokenizer(first[i : i + ENCODE_CHUNK], second[i : i + ENCODE_CHUNK], truncation=True,
                        max_length=max_length, padding="max_length", return_tensors="pt")
        ids = enc["input_ids"]
        types = enc.get("token_type_ids", torch.zeros_like(ids))
        parts.append(torch.stack([ids, enc["attention_mask"], types], dim=1).to(torch.int64))
    return torch.cat(parts) if parts else torch.zeros(0, 3, max_length, dtype=torch.int64)


def tokenizer_digest(tokenizer) -> str:
    """Contents of the tokenizer (vocabulary, rules, special tokens) and the library versions that apply them."""
    if getattr(tokenizer, "is_fast", False):
        state = json.loads(tokenizer.backend_tokenizer.to_str())
        # Encoding sets these on the backend; they are call arguments (fixed here), not part of the tokenizer.
        state.pop("truncation", None)
        state.pop("padding", None)
        state = json.dumps(state, sort_keys=True)
    else:
        state = repr(tokenizer)
    text = f"{state}|{type(tokenizer).__name__}|{version('tokenizers')}|{version('transformers')}"
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with file_errors(path, "read"), open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tokenised(path: Path, tokenizer, max_length: int = MAX_LENGTH) -> InMemory:
    """One TSV file as tensors, cached under the digest of (file, tokenizer, max_length)."""
    key = hashlib.sha256(f"{file_digest(path)}|{tokenizer_digest(tokenizer)}|{max_length}".encode()).hexdigest()

    def build() -> dict[str, torch.Tensor]:
        first, second, labels = read_tsv(path)
        # int32 halves the cache on disk; token ids and masks fit easily.
        return {"x": encode_pairs(tokenizer, first, second, max_length).to(torch.int32), "y": labels}

    data = cached_tensors(f"mnli-{path.stem}-{key[:20]}", build)
    return InMemory(data["x"].to(torch.int64), data["y"])


def load_mnli(root: Path, tokenizer_dir, test_file: str, name: str) -> Source:
    folder = mnli_dir(root, ("train.tsv", test_file), name)
    tokenizer = load_tokenizer(tokenizer_dir, name)
    train, test = tokenised(folder / "train.tsv", tokenizer), tokenised(folder / test_file, tokenizer)
    return Source(train, test, num_classes=len(LABELS), val_size=min(VAL_SIZE, len(train) // 10),
                  model_options={"vocab_size": len(tokenizer), "label_names": LABELS})


@DATASETS.register("mnli")
def mnli(root: Path, tokenizer=None) -> Source:
    """GLUE MNLI from its TSV files (data.root), test = dev_matched; needs the model's tokenizer."""
    return load_mnli(root, tokenizer, "dev_matched.tsv", "mnli")


@DATASETS.register("mnli-mm")
def mnli_mismatched(root: Path, tokenizer=None) -> Source:
    """GLUE MNLI from its TSV files (data.root), test = dev_mismatched; needs the model's tokenizer."""
    return load_mnli(root, tokenizer, "dev_mismatched.tsv", "mnli-mm")
