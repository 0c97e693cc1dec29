"""Language: Hugging Face models from local directories, GLUE MNLI TSVs, the synthetic `pairs` task, BERT tickets.

Everything is offline: a tiny BERT is saved with `save_pretrained` (body only, as bert-base-uncased ships) together
with a WordPiece tokenizer, and MNLI files are written in GLUE's exact TSV layout from generated sentence pairs.
"""

import json
import os
import sys

import pytest
import torch

pytest.importorskip("transformers")

from ticketlab.core.files import load_tensors  # noqa: E402
from ticketlab.core.masks import Masks, prunable_names  # noqa: E402
from ticketlab.data import load_dataset  # noqa: E402
from ticketlab.data.mnli import LABELS, read_tsv  # noqa: E402
from ticketlab.data.pairs import NOUNS, VOCABULARY, pairs_tokenizer, sample  # noqa: E402
from ticketlab.engine.lottery import Lottery  # noqa: E402
from ticketlab.engine.presets import build_config  # noqa: E402
from ticketlab.errors import TicketlabError  # noqa: E402
from ticketlab.models import build_model  # noqa: E402

from .conftest import assert_user_error, file_stamps, main_in_process, run_cli, run_clis  # noqa: E402

SMOKE = ["train.steps=4it", "train.eval_every=2it", "train.checkpoint_every=2it", "data.batch_size=8"]
PRUNED_KINDS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                "intermediate.dense", "output.dense")
TINY = {"vocab_size": len(VOCABULARY), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}


@pytest.fixture(autouse=True, scope="module")
def offline(tmp_path_factory):
    """No hub access, a private cache, one thread (the machine is shared; a tiny BERT gains nothing from two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("TICKETLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield
    torch.set_num_threads(threads)


def save_bert(directory, head_labels=None, tokenizer=True, seed=0):
    """A tiny BERT as Hugging Face saves it: the body only (like bert-base-uncased) or with a classifier head."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    if head_labels is None:
        model = BertModel(BertConfig(**TINY))
    else:
        model = BertForSequenceClassification(BertConfig(**TINY, id2label=dict(enumerate(head_labels)),
                                                         label2id={n: i for i, n in enumerate(head_labels)}))
    model.save_pretrained(directory)
    if tokenizer:
        pairs_tokenizer().save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_bert(tmp_path_factory.mktemp("bert"))


# ---- GLUE MNLI files, exactly as GLUE writes them ----

TRAIN_COLUMNS = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                 "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
DEV_COLUMNS = [*TRAIN_COLUMNS[:-2], "label1", "label2", "label3", "label4", "label5", "gold_label"]
GENRES = ("fiction", "government", "slate", "telephone", "travel")


def parses(sentence: str) -> tuple[str, str]:
    words = sentence.split()
    binary = "( " + " ".join(f"( {w} )" for w in words) + " )"
    tree = "(ROOT (S " + " ".join(f"(NN {w})" for w in words) + "))"
    return binary, tree


def glue_rows(n: int, seed: int, dev: bool) -> tuple[list[str], list[str]]:
    """TSV lines (header first) of n generated pairs, and their gold labels."""
    premises, hypotheses, labels = sample(n, torch.Generator().manual_seed(seed))
    lines, golds = ["\t".join(DEV_COLUMNS if dev else TRAIN_COLUMNS)], []
    for i, (p, h, y) in enumerate(zip(premises, hypotheses, labels.tolist(), strict=True)):
        if i == 1:
            p = f'the "quoted {p}'  # GLUE fields are never quoted: a stray quote must not join lines
        gold = LABELS[y]
        (pb, pt), (hb, ht) = parses(p), parses(h)
        votes = [gold] * (5 if dev else 1)
        lines.append("\t".join([str(i), str(1000 + i), f"{1000 + i}{gold[0]}", GENRES[i % 5], pb, hb, pt, ht, p, h,
                                *votes, gold]))
        golds.append(gold)
    return lines, golds


def write_glue(folder, n_train=60, n_dev=20, skip_row=True):
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, n, seed, dev in (("train.tsv", n_train, 1, False), ("dev_matched.tsv", n_dev, 2, True),
                               ("dev_mismatched.tsv", n_dev, 3, True)):
        lines, golds = glue_rows(n, seed, dev)
        if skip_row and name == "train.tsv":  # no annotator consensus: skipped, as every GLUE reader does
            fields = lines[-1].split("\t")
            lines[-1] = "\t".join([*fields[:-1], "-"])
            golds = golds[:-1]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        written[name] = golds
    return written


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glue") / "MNLI"
    return folder, write_glue(folder)


def test_mnli_reads_the_glue_files(glue_dir, bert_dir):
    folder, golds = glue_dir
    splits = load_dataset("mnli", root=folder.parent, tokenizer=bert_dir)  # root/MNLI/ is found too
    assert splits.input_shape == (3, 128) and splits.num_classes == 3
    assert len(splits.train) + len(splits.val) == 59 and len(splits.val) == 5  # 60 rows, one '-' skipped
    expected = torch.tensor([LABELS.index(g) for g in golds["dev_matched.tsv"]])
    assert torch.equal(splits.test.y, expected)
    # Tokens are the tokenizer's own encoding of (sentence1, sentence2).
    first, second, labels = read_tsv(folder / "dev_matched.tsv")
    assert torch.equal(labels, expected) and len(first) == 20
    enc = pairs_tokenizer()(first[3], second[3])
    length = len(enc["input_ids"])
    row = splits.test.x[3]
    assert row[0, :length].tolist() == enc["input_ids"] and row[2, :length].tolist() == enc["token_type_ids"]
    assert row[1].sum() == length and (row[:, length:] == 0).all()
    assert splits.model_options == {"vocab_size": len(VOCABULARY), "label_names": LABELS}
    mismatched = load_dataset("mnli-mm", root=folder, tokenizer=bert_dir)
    assert torch.equal(mismatched.test.y, torch.tensor([LABELS.index(g) for g in golds["dev_mismatched.tsv"]]))


def test_mnli_cache_is_keyed_by_file_and_tokenizer(tmp_path, bert_dir, monkeypatch):
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "glue"
    write_glue(folder, n_train=20, n_dev=5)
    first = load_dataset("mnli", root=folder, tokenizer=bert_dir)
    files = set((tmp_path / "cache").glob("mnli-*.safetensors"))
    assert len(files) == 2  # train and dev_matched
    assert torch.equal(load_dataset("mnli", root=folder, tokenizer=bert_dir).train.x, first.train.x)
    assert set((tmp_path / "cache").glob("mnli-*.safetensors")) == files  # read back, nothing new
    other = tmp_path / "other-tokenizer"
    tokenizer = pairs_tokenizer()
    tokenizer.add_tokens(["zebra"])
    tokenizer.save_pretrained(other)
    load_dataset("mnli", root=folder, tokenizer=other)
    assert len(set((tmp_path / "cache").glob("mnli-*.safetensors"))) == 4


# ---- models ----

def test_directory_body_gets_a_seeded_head_and_keeps_the_pretrained_weights(bert_dir):
    saved, _ = load_tensors(bert_dir / "model.safetensors")
    a = build_model("hf", num_classes=3, seed=1, path=str(bert_dir))
    b = build_model("hf", num_classes=3, seed=1, path=str(bert_dir))
    c = build_model("hf", num_classes=3, seed=2, path=str(bert_dir))
    assert a.hf.head_initialised
    params = {n: p.detach() for n, p in a.named_parameters()}
    for key, value in saved.items():
        assert torch.equal(params["hf.bert." + key], value), key
    assert torch.equal(a.hf.classifier.weight, b.hf.classifier.weight)
    assert not torch.equal(a.hf.classifier.weight, c.hf.classifier.weight)
    assert a.hf.config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}


def test_prunable_set_is_the_bert_ticket_set(bert_dir):
    model = build_model("hf", num_classes=3, path=str(bert_dir))
    names = prunable_names(model, exclude=["*classifier*"])
    expected = [f"hf.bert.encoder.layer.{i}.{kind}.weight" for i in range(2) for kind in PRUNED_KINDS]
    assert names == [*expected, "hf.bert.pooler.dense.weight"]
    embeddings = [n for n, _ in model.named_parameters() if "embeddings" in n]
    assert embeddings and not set(embeddings) & set(prunable_names(model))


def test_padding_columns_are_cut_without_changing_logits(bert_dir):
    model = build_model("hf", num_classes=3, path=str(bert_dir)).eval()
    splits = load_dataset("pairs")
    x = splits.test.x[:16]
    assert x.shape[-1] == 24 and int(x[:, 1].sum(1).max()) < 24
    with torch.no_grad():
        full = model.hf(input_ids=x[:, 0], attention_mask=x[:, 1], token_type_ids=x[:, 2]).logits
        assert torch.allclose(model(x), full, atol=1e-5)


def test_pairs_labels_follow_the_sentences():
    premises, hypotheses, labels = sample(600, torch.Generator().manual_seed(5))
    assert torch.bincount(labels).tolist() == [200, 200, 200]
    for p, h, y in zip(premises, hypotheses, labels.tolist(), strict=True):
        _, colour, noun, _ = p.split()
        _, h_noun, _, h_colour = h.split()
        truth = 1 if h_noun != noun else (0 if h_colour == colour else 2)
        assert y == truth and h_noun in NOUNS
    a, b = load_dataset("pairs"), load_dataset("pairs", seed=3)
    assert torch.equal(a.test.x, b.test.x) and not torch.equal(a.val.y, b.val.y)  # fixed data, seeded val split


# ---- BERT tickets end to end ----

@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, bert_dir, glue_dir):
    folder, _ = glue_dir
    cfg = build_config("bert-mnli", overrides=[*SMOKE, f"model.path={bert_dir}", f"data.root={folder}",
                                               "lottery.levels=2"])
    lottery = Lottery.open(cfg, tmp_path_factory.mktemp("runs"))
    lottery.run()
    return lottery


def test_round_zeroes_pruned_and_rewinds_kept_to_pretrained(bert_run, bert_dir):
    saved, _ = load_tensors(bert_dir / "model.safetensors")
    prunable = prunable_names(bert_run.model, exclude=["*classifier*"])
    n_prunable = sum(dict(bert_run.model.named_parameters())[n].numel() for n in prunable)
    for level, removed in ((1, 0.1), (2, 0.2)):  # 10% of the ORIGINAL weights per level
        masks = Masks.load(bert_run.store.level(level) / "masks.safetensors")
        assert n_prunable - sum(masks.kept()[n] for n in prunable) == round(removed * n_prunable)
        assert masks.kept()["hf.classifier.weight"] == masks.numels()["hf.classifier.weight"]
        model, start, _ = bert_run.start_point(level)  # what the level trains from
        masks.apply(model)
        assert start == 0
        for name, p in model.named_parameters():
            if name.startswith("hf.classifier"):
                continue
            pretrained = saved[name.removeprefix("hf.bert.")]
            if name in masks:
                assert (p[~masks[name]] == 0).all() and torch.equal(p[masks[name]], pretrained[masks[name]])
            else:  # embeddings, LayerNorms, biases: untouched
                assert torch.equal(p, pretrained), name
    final = load_tensors(bert_run.store.level(2) / "final.safetensors")[0]
    key = "hf.bert.embeddings.word_embeddings.weight"
    assert not torch.equal(final[key], saved[key.removeprefix("hf.bert.")])  # the embeddings do train


def test_random_reinit_of_a_pretrained_model_is_fresh(bert_dir):
    pretrained = build_model("hf", num_classes=3, path=str(bert_dir), seed=0).state_dict()
    fresh = build_model("hf", num_classes=3, path=str(bert_dir), seed=0, pretrained=False).state_dict()
    assert pretrained.keys() == fresh.keys()
    key = "hf.bert.encoder.layer.0.attention.self.query.weight"
    assert pretrained[key].shape == fresh[key].shape and not torch.equal(pretrained[key], fresh[key])


def test_random_reinit_baseline_starts_from_a_fresh_initialisation(tmp_path, glue_dir):
    """The random-reinit baseline of a pretrained model: every tensor differs from the pretrained one and follows
    BERT's initialisation (weights N(0, initializer_range), LayerNorm 1 and 0, biases 0)."""
    from safetensors.torch import load_file, save_file

    from ticketlab.engine.baselines import BASELINES, Start

    pretrained_dir = save_bert(tmp_path / "pretrained")
    weights = pretrained_dir / "model.safetensors"
    generator = torch.Generator().manual_seed(1)  # "pretraining": every tensor moved off its initial value
    save_file({k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in load_file(weights).items()},
              weights, metadata={"format": "pt"})
    cfg = build_config("bert-mnli", overrides=[*SMOKE, f"model.path={pretrained_dir}", f"data.root={glue_dir[0]}"])
    lottery = Lottery.open(cfg, tmp_path / "runs")
    pretrained = lottery.fresh_model(cfg.seeds.init)
    start = BASELINES.get("random_reinit")(Start(1, pretrained, Masks.ones(pretrained)), lottery)
    fresh, before = dict(start.model.named_parameters()), dict(pretrained.named_parameters())
    assert fresh.keys() == before.keys()
    for name, p in fresh.items():
        assert "classifier" in name or not torch.equal(p, before[name]), name  # the head is fresh in both
        if "LayerNorm.weight" in name:
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.endswith("bias"):
            assert torch.equal(p, torch.zeros_like(p)), name
        elif p.numel() >= 1000:  # BERT's init: N(0, 0.02)
            assert 0.017 < p.std().item() < 0.023 and abs(p.mean().item()) < 0.003, name


def test_bert_mnli_smoke_from_the_command_line(tmp_path, bert_dir, glue_dir):
    folder, _ = glue_dir
    env_runs = tmp_path / "runs"
    args = ["run", "bert-mnli", "--runs-dir", env_runs, "--set", f"model.path={bert_dir}", "--set",
            f"data.root={folder}", "--set", "lottery.levels=1", *(a for s in SMOKE for a in ("--set", s))]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    stamps = file_stamps(env_runs)
    # dense, level 1, and its random-pruning and random-reinit baselines
    assert any(p.name == "summary.json" for p in stamps) and len(list(env_runs.rglob("summary.json"))) == 4
    again, report = run_clis(args, ["report", env_runs, "--out", tmp_path / "report"])  # both only read the runs
    assert again.returncode == 0, again.stderr
    assert file_stamps(env_runs) == stamps  # trained nothing
    assert report.returncode == 0, report.stderr
    assert "82.39" in (tmp_path / "report" / "report.md").read_text()  # the talk's figure beside ours


def test_tiny_bert_pairs_smoke_resume_and_report(tmp_path):
    from ticketlab.report import load_runs, summary_table, write_report

    cfg = build_config("tiny-bert-pairs", overrides=[*SMOKE, "lottery.levels=2"])
    store = Lottery.open(cfg, tmp_path / "runs", "tiny-bert-pairs").run()
    summaries = sorted(store.root.rglob("summary.json"))
    stamps = file_stamps(store.root)
    assert len(summaries) == 5  # levels 0, 1, 2 and random pruning at 1 and 2
    Lottery.open(cfg, tmp_path / "runs", "tiny-bert-pairs").run()
    assert file_stamps(store.root) == stamps  # trained nothing
    masks = Masks.load(store.level(2) / "masks.safetensors")
    pruned = [n for n in masks if "classifier" not in n]
    assert sum(masks.kept()[n] for n in pruned) / sum(masks.numels()[n] for n in pruned) == pytest.approx(0.8, abs=1e-4)
    assert json.loads((store.level(2) / "summary.json").read_text())["density"] == pytest.approx(masks.density())
    runs = load_runs([tmp_path / "runs"])
    write_report(runs, tmp_path / "report")
    assert "tiny-bert" in summary_table(runs) and (tmp_path / "report" / "report.md").is_file()


# ---- bad input ----

def test_label_count_mismatch_names_both(tmp_path, glue_dir, capsys):
    head2 = save_bert(tmp_path / "head2", head_labels=["no", "yes"])
    # `run`'s main() in this process: its real command line's errors are test_lottery.py's test_cli_bad_inputs
    result = main_in_process(capsys, "run", "bert-mnli", "--runs-dir", tmp_path / "runs", "--set",
                             f"model.path={head2}", "--set", f"data.root={glue_dir[0]}")
    assert_user_error(result, str(head2), "head for 2 labels", "3 classes")


def test_head_with_other_label_order_is_refused(tmp_path):
    swapped = save_bert(tmp_path / "swapped", head_labels=["contradiction", "neutral", "entailment"])
    with pytest.raises(TicketlabError, match="labels \\['contradiction', 'neutral', 'entailment'\\]"):
        build_model("hf", num_classes=3, path=str(swapped), label_names=LABELS)
    fitting = save_bert(tmp_path / "fitting", head_labels=list(LABELS), seed=4)
    model = build_model("hf", num_classes=3, path=str(fitting), label_names=LABELS)
    assert not model.hf.head_initialised  # its trained head is used as is
    assert torch.equal(model.hf.classifier.weight, load_tensors(fitting / "model.safetensors")[0]["classifier.weight"])


def test_missing_tsv_names_the_file_and_where_to_get_glue(tmp_path, bert_dir):
    folder = tmp_path / "glue"
    write_glue(folder, n_train=10, n_dev=4)
    os.remove(folder / "dev_matched.tsv")
    with pytest.raises(TicketlabError, match="gluebenchmark.com") as error:
        load_dataset("mnli", root=folder, tokenizer=bert_dir)
    assert f"missing {folder / 'dev_matched.tsv'}" in str(error.value) and "\n" not in str(error.value)
    load_dataset("mnli-mm", root=folder, tokenizer=bert_dir)  # the mismatched split does not need it


@pytest.mark.parametrize(("damage", "message"), [
    ("no-tokenizer", "has no tokenizer"),
    ("no-config", "config.json is missing"),
    ("no-weights", "has no weights"),
    ("no-directory", "does not exist"),
    ("not-classifiable", "model type 'clip_text_model' has no sequence-classification head"),
])
def test_bad_model_directories(tmp_path, glue_dir, damage, message):
    directory = tmp_path / "model"
    if damage != "no-directory":
        save_bert(directory, tokenizer=damage != "no-tokenizer")
    if damage == "no-config":
        os.remove(directory / "config.json")
    if damage == "no-weights":
        os.remove(directory / "model.safetensors")
    if damage == "not-classifiable":
        (directory / "config.json").write_text(json.dumps({"model_type": "clip_text_model"}))
    with pytest.raises(TicketlabError, match=message) as error:
        cfg = build_config("bert-mnli", overrides=[f"model.path={directory}", f"data.root={glue_dir[0]}"])
        Lottery.open(cfg, tmp_path / "runs")
    assert str(directory) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda lines: [*lines[:3], lines[3].rsplit("\t", 1)[0] + "\tmaybe"], "line 4: gold_label 'maybe'"),
    (lambda lines: [*lines[:2], lines[2] + "\textra"], "line 3 has 13 tab-separated fields"),
    (lambda lines: [lines[0].replace("gold_label", "gold"), *lines[1:]], "lacks the column 'gold_label'"),
])
def test_malformed_tsv(tmp_path, bert_dir, edit, message):
    folder = tmp_path / "glue"
    write_glue(folder, n_train=8, n_dev=4, skip_row=False)
    lines = (folder / "train.tsv").read_text().splitlines()
    (folder / "train.tsv").write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(TicketlabError, match=message):
        load_dataset("mnli", root=folder, tokenizer=bert_dir)


def test_text_data_needs_a_tokenizer_and_a_fitting_model(tmp_path, bert_dir, glue_dir):
    with pytest.raises(TicketlabError, match="needs the model's tokenizer: set model.path=DIR"):
        load_dataset("mnli", root=glue_dir[0])
    with pytest.raises(TicketlabError, match=f"tokenizer has 40000 tokens but model directory {bert_dir} embeds only"):
        build_model("hf", num_classes=3, path=str(bert_dir), vocab_size=40_000)
    with pytest.raises(TicketlabError, match="embeds at most 128 positions, the data has sequences of 256"):
        build_model("hf", num_classes=3, path=str(bert_dir), input_shape=(3, 256))


def test_missing_transformers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    with pytest.raises(TicketlabError, match=r"pip install 'ticketlab\[nlp\]'"):
        build_model("tiny-bert", num_classes=3)
    with pytest.raises(TicketlabError, match=r"pip install 'ticketlab\[nlp\]'"):
        load_dataset("pairs")
