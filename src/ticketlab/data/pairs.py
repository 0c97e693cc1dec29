"""`pairs`: a synthetic sentence-pair task in MNLI's three classes, generated offline, for tests and CPU demos.

    premise     "the red cat and the blue dog sleep"
    hypothesis  "the dog is blue"    entailment     (a noun of the premise with its colour)
                "the dog is green"   contradiction  (a noun of the premise with another colour)
                "the fox is blue"    neutral        (a noun the premise does not mention)

The label needs both sentences (find the hypothesis's noun in the premise, compare its colour), so a model must
attend across the [SEP]; a 2-layer tiny BERT learns it to high accuracy in a few hundred steps. Sentences are
tokenised by a real BERT WordPiece tokenizer built here from the task's vocabulary (`pairs_tokenizer()`), through
the same code as MNLI. Classes are balanced; the data is fixed by DATA_SEED (4,000 train / 1,000 test).
"""

import torch

from ticketlab.data.mnli import LABELS, encode_pairs
from ticketlab.data.source import DATASETS, Source
from ticketlab.data.splits import InMemory

NOUNS = ("cat", "dog", "bird", "fish", "horse", "cow", "fox", "owl", "bear", "frog")
COLOURS = ("red", "blue", "green", "yellow", "black", "white", "brown", "pink")
VERBS = ("sleep", "play", "wait", "sing", "hide", "rest")
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VOCABULARY = (*SPECIAL, "the", "and", "is", *NOUNS, *COLOURS, *VERBS)
MAX_LENGTH = 24  # the longest pair is 15 tokens; the rest is padding, as in real data
N_TRAIN, N_TEST, VAL_SIZE = 4000, 1000, 500
DATA_SEED = 0


def pairs_tokenizer():
    """A BERT WordPiece tokenizer (transformers' BertTokenizer) over VOCABULARY; save it with .save_pretrained."""
    from ticketlab.models.hf import require_transformers

    return require_transformers().BertTokenizer(vocab={word: i for i, word in enumerate(VOCABULARY)})


def other(value: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """A uniform draw from range(count) that differs from `value`, elementwise."""
    return (value + 1 + torch.randint(count - 1, value.shape, generator=generator)) % count


def sample(n: int, generator: torch.Generator) -> tuple[list[str], list[str], torch.Tensor]:
    """n (premise, hypothesis, label) triples with balanced labels (0 entailment, 1 neutral, 2 contradiction)."""
    k, c = len(NOUNS), len(COLOURS)
    label = torch.randperm(n, generator=generator) % len(LABELS)
    noun, colour, verb = (torch.randint(m, (n,), generator=generator) for m in (k, c, len(VERBS)))
    hyp_noun = torch.where(label == 1, other(noun, k, generator), noun)  # neutral: an animal not mentioned
    hyp_colour = torch.where(label == 2, other(colour, c, generator),  # contradiction: another colour
                             torch.where(label == 1, torch.randint(c, (n,), generator=generator), colour))
    premises = [f"the {COLOURS[a]} {NOUNS[b]} {VERBS[v]}"
                for a, b, v in zip(colour.tolist(), noun.tolist(), verb.tolist(), strict=True)]
    hypotheses = [f"the {NOUNS[a]} is {COLOURS[b]}"
                  for a, b in zip(hyp_noun.tolist(), hyp_colour.tolist(), strict=True)]
    return premises, hypotheses, label


@DATASETS.register("pairs")
def pairs(root=None) -> Source:
    """Synthetic sentence pairs (entailment / neutral / contradiction about coloured animals), offline."""
    premises, hypotheses, labels = sample(N_TRAIN + N_TEST, torch.Generator().manual_seed(DATA_SEED))
    tokenizer = pairs_tokenizer()
    x = encode_pairs(tokenizer, premises, hypotheses, MAX_LENGTH)
    return Source(InMemory(x[:N_TRAIN], labels[:N_TRAIN]), InMemory(x[N_TRAIN:], labels[N_TRAIN:]),
                  num_classes=len(LABELS), val_size=VAL_SIZE,
                  model_options={"vocab_size": len(tokenizer), "label_names": LABELS})
