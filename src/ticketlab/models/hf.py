"""Hugging Face `transformers` sequence classifiers as ticketlab models (optional extra: `pip install ticketlab[nlp]`).

    build_model("hf", num_classes=3, path="~/models/bert-base-uncased")   # pretrained body, fresh seeded head
    build_model("hf", num_classes=3, config={"model_type": "bert", "num_hidden_layers": 4})   # random init
    build_model("tiny-bert", num_classes=3, vocab_size=64)                 # a 2-layer BERT for tests and demos

The model takes one int64 tensor (N, 3, L) = (input_ids, attention_mask, token_type_ids), as the text datasets give
it, and returns logits (N, num_classes). Parameters are the Hugging Face names under `hf.`, e.g.
`hf.bert.encoder.layer.0.attention.self.query.weight`. The default prunable set (Linear weights) is then exactly
what BERT tickets prune (Q, K, V, attention output, intermediate, output, pooler) plus the classifier, which
`prune.exclude: ["*classifier*"]` removes; embeddings are nn.Embedding and never prunable by default.

A directory is loaded offline (`local_files_only`). Its classification head is used when it has one, with exactly
the data's number of labels (anything else is an error, never a silent resize); a directory holding only the
pretrained body (as `bert-base-uncased` does) gets a fresh head, initialised from the build seed.
"""

import contextlib
import copy
import inspect
from pathlib import Path

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.spec import MODELS

TEXT_INPUT = (3, 128)  # (input_ids, attention_mask, token_type_ids) x max sequence length, as GLUE fine-tuning
# transformers reads .bin checkpoints with torch.load(weights_only=True): no code runs from them.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
INSTALL = "pip install 'ticketlab[nlp]'"


def require_transformers():
    try:
        import transformers
    except ImportError:
        raise TicketlabError(f"language models need the transformers package: {INSTALL}") from None
    return transformers


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars for one call, restoring the user's settings."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


class SequenceClassifier(nn.Module):
    """A Hugging Face sequence-classification model behind ticketlab's one-tensor interface."""

    input_dtype = torch.int64  # token ids, not features: callers making example inputs need to know

    def __init__(self, hf_model: nn.Module, input_shape: tuple[int, ...]):
        super().__init__()
        self.hf = hf_model
        self.input_shape = tuple(input_shape)
        # DistilBERT and friends have no segment embeddings and refuse token_type_ids.
        self.takes_token_types = "token_type_ids" in inspect.signature(hf_model.forward).parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask, types = x.unbind(1)
        if x.is_meta:  # shapes only: transformers' mask helpers read values, so give them none
            mask = None
        else:
            # Columns that are padding in every row change nothing but cost time: cut them (right padding).
            length = int(mask.any(0).cumsum(0).argmax()) + 1
            ids, mask, types = ids[:, :length], mask[:, :length], types[:, :length]
        inputs = {"input_ids": ids, "attention_mask": mask}
        if self.takes_token_types:
            inputs["token_type_ids"] = types
        return self.hf(**inputs).logits

    def example_input(self, batch: int = 2, seed: int = 0) -> torch.Tensor:
        """Random token ids, full attention, one segment (ticketlab.core.counting and tests use it)."""
        device = next(self.parameters()).device
        if device.type == "meta":
            return torch.empty(batch, *self.input_shape, dtype=torch.int64, device=device)
        length = self.input_shape[-1]
        ids = torch.randint(self.hf.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))
        return torch.stack([ids, torch.ones_like(ids), torch.zeros_like(ids)], dim=1).to(device)

    def save_pretrained(self, directory) -> None:
        """Write the wrapped model in Hugging Face format (e.g. a ticket, after `masks.apply(model)`)."""
        with quiet_transformers():
            self.hf.save_pretrained(directory)


def check_classifiable(model_type: str, where: str) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as HEADS

    if model_type not in HEADS:
        raise TicketlabError(f"{where}: model type {model_type!r} has no sequence-classification head in "
                             f"transformers; use a model type with a *ForSequenceClassification class (e.g. bert)")


def with_labels(config, num_classes: int, label_names) -> object:
    """A copy of `config` sized for `num_classes`, naming the labels when the data names them."""
    config = copy.deepcopy(config)
    config.num_labels = num_classes
    if label_names is not None:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}
    return config


def from_config(config, num_classes: int, label_names) -> nn.Module:
    """Random initialisation (seeded by `build_model`) from a config object, a dict with `model_type`, or None
    (BERT-base's shape)."""
    transformers = require_transformers()
    if config is None:
        config = transformers.BertConfig()
    elif isinstance(config, dict):
        options = dict(config)
        model_type = options.pop("model_type", "bert")
        try:
            config = transformers.AutoConfig.for_model(model_type, **options)
        except ValueError as e:
            raise TicketlabError(f"model config: {str(e).splitlines()[0]}") from None
    check_classifiable(config.model_type, "model config")
    return transformers.AutoModelForSequenceClassification.from_config(with_labels(config, num_classes, label_names))


def from_directory(path: Path, num_classes: int, label_names) -> nn.Module:
    """The pretrained model in a local Hugging Face directory, offline, in float32."""
    transformers = require_transformers()
    where = f"model directory {path}"
    if not path.is_dir():
        raise TicketlabError(f"{where} does not exist; place a Hugging Face model there (config.json and weights)")
    if not (path / "config.json").is_file():
        raise TicketlabError(f"{where} is not a Hugging Face model directory: config.json is missing")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise TicketlabError(f"{where} has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise TicketlabError(f"{where}: unreadable config.json ({str(e).splitlines()[0]})") from None
    check_classifiable(config.model_type, where)
    with quiet_transformers():
        model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
            path, config=with_labels(config, num_classes, label_names), local_files_only=True, dtype=torch.float32,
            output_loading_info=True, ignore_mismatched_sizes=True)
    check_loaded(model, info, where, config, num_classes, label_names)
    return model


def check_loaded(model, info: dict, where: str, saved_config, num_classes: int, label_names) -> None:
    """The body must be complete; a head, when present, must fit the data. A missing head is initialised fresh."""
    body = model.base_model_prefix + "."
    mismatched = sorted(key for key, *_ in info["mismatched_keys"])
    if any(not key.startswith(body) for key in mismatched):
        raise TicketlabError(f"{where} has a classification head for {saved_config.num_labels} labels but the data "
                             f"has {num_classes} classes; use data with {saved_config.num_labels} classes or a "
                             f"directory holding only the pretrained body (no head)")
    missing_body = sorted(key for key in info["missing_keys"] if key.startswith(body))
    if mismatched or missing_body:
        bad = (mismatched or missing_body)[0]
        raise TicketlabError(f"{where} is incomplete: weight {bad!r} is missing or has the wrong shape "
                             f"({len(mismatched) + len(missing_body)} such weights)")
    model.head_initialised = bool(info["missing_keys"])
    saved = [saved_config.id2label[i] for i in sorted(saved_config.id2label)]
    named = not all(n.startswith("LABEL_") for n in saved)  # LABEL_i: transformers' placeholders, no order known
    if (label_names is not None and not model.head_initialised and named
            and [n.lower() for n in saved] != [n.lower() for n in label_names]):
        raise TicketlabError(f"{where} has a head with labels {saved}, the data's labels are "
                             f"{list(label_names)} (another order or other labels)")


def check_fits(config, input_shape, vocab_size: int | None, where: str) -> None:
    """Sequences no longer than the position table; token ids inside the embedding table."""
    length = tuple(input_shape)[-1]
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and length > positions:
        raise TicketlabError(f"{where} embeds at most {positions} positions, the data has sequences of {length}")
    if vocab_size is not None and vocab_size > config.vocab_size:
        raise TicketlabError(f"the tokenizer has {vocab_size} tokens but {where} embeds only {config.vocab_size}; "
                             f"use the model's own tokenizer")


def classifier(num_classes: int, path=None, config=None, input_shape=TEXT_INPUT, vocab_size=None,
               label_names=None, pretrained: bool = True) -> SequenceClassifier:
    """The wrapped model from `path` (pretrained) or `config` (random init); see the module docstring.

    `pretrained=False` builds the architecture of `path` with a fresh random initialisation (the random-reinit
    baseline of a pretrained model)."""
    if path is not None and config is not None:
        raise TicketlabError("give a model directory (model.path) or a config, not both")
    if len(tuple(input_shape)) != 2 or tuple(input_shape)[0] != 3:
        raise TicketlabError(f"text models take input (3, length), got {tuple(input_shape)}")
    if path is not None and not pretrained:
        from_directory(Path(path).expanduser(), num_classes, label_names)  # the same checks as a pretrained load
        config = require_transformers().AutoConfig.from_pretrained(Path(path).expanduser(), local_files_only=True)
        path = None
    if path is not None:
        hf_model = from_directory(Path(path).expanduser(), num_classes, label_names)
        where = f"model directory {path}"
    else:
        hf_model = from_config(config, num_classes, label_names)
        where = "the model config"
    check_fits(hf_model.config, input_shape, vocab_size, where)
    return SequenceClassifier(hf_model, input_shape)


@MODELS.register("hf", input_shape=TEXT_INPUT, num_classes=3)
def hf(num_classes: int, path=None, config=None, input_shape=TEXT_INPUT, vocab_size=None, label_names=None,
       pretrained: bool = True):
    """Any Hugging Face sequence classifier: pretrained from model.path, else random init (BERT-base shape)."""
    return classifier(num_classes, path, config, input_shape, vocab_size, label_names, pretrained)


@MODELS.register("tiny-bert", input_shape=(3, 32), num_classes=3)
def tiny_bert(num_classes: int, input_shape=(3, 32), vocab_size=None, label_names=None, hidden=64, layers=2, heads=4):
    """A 2-layer, 64-wide BERT (random init) for offline tests and CPU demos; vocabulary sized to the data."""
    # Trained from scratch on a small task, BERT's init (std 0.02) and dropout 0.1 leave it on the loss plateau of
    # near-uniform attention for thousands of steps; std 0.2 and no dropout learn `pairs` in ~400 steps.
    config = {"model_type": "bert", "vocab_size": vocab_size or 1000, "hidden_size": hidden,
              "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": 4 * hidden,
              "max_position_embeddings": max(128, tuple(input_shape)[-1]), "initializer_range": 0.2,
              "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    return classifier(num_classes, config=config, input_shape=input_shape, vocab_size=vocab_size,
                      label_names=label_names)
