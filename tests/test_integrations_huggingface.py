"""The lottery callback inside a Hugging Face Trainer: a tiny BERT built from a config fine-tuned on random tokens;
pruned weights stay exactly zero, level 1 starts from the rewind point, bad input is refused in one line."""

import copy

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # transformers' Trainer needs it

from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

from ticketlab import Masks, PruneSpec, TicketlabError, prune
from ticketlab.integrations.huggingface import LotteryCallback

STEPS, VOCAB, LENGTH = 6, 40, 8


class Tokens(torch.utils.data.Dataset):
    """Random token sequences; the label is the parity of the first token, so there is something to learn."""

    def __init__(self, n: int, seed: int):
        self.ids = torch.randint(1, VOCAB, (n, LENGTH), generator=torch.Generator().manual_seed(seed))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i, 0] % 2}


class Probe(TrainerCallback):
    """Copies of the weights where the test needs them, taken independently of the callback under test."""

    def __init__(self, step: int):
        self.step, self.at_step, self.begins, self.ends = step, None, [], []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.begins.append(copy.deepcopy(model.state_dict()))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step and self.at_step is None:
            self.at_step = copy.deepcopy(model.state_dict())

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.ends.append(copy.deepcopy(model.state_dict()))


def tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=LENGTH, num_labels=2)
    return BertForSequenceClassification(config)


def trainer(model, tmp_path, callbacks, steps=STEPS):
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=8,
                             learning_rate=1e-2, use_cpu=True, report_to="none", save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, seed=0)
    return Trainer(model=model, args=args, train_dataset=Tokens(48, 1), eval_dataset=Tokens(16, 2),
                   callbacks=callbacks)


def assert_pruned_zero(model, masks: Masks):
    params = dict(model.named_parameters())
    for name, keep in masks.items():
        assert torch.equal(params[name][~keep], torch.zeros_like(params[name][~keep])), name


def test_levels_keep_masks_and_start_from_the_rewind_point(tmp_path):
    model, probe = tiny_bert(), Probe(step=2)
    cb = LotteryCallback(PruneSpec(rate=0.5, exclude=("classifier.*",)), rewind=2)
    run = trainer(model, tmp_path, [cb, probe])  # the probe comes after cb: it sees what cb left
    for level in cb.levels(2):
        run.train()
        run.evaluate()
        assert_pruned_zero(model, cb.masks)
        if level == 0:  # level 1's masks should be the magnitude pruning of level 0's final weights
            masks_1 = prune(model, Masks.ones(model, names=list(cb.masks)), cb.spec)
        if level == 1:
            assert cb.masks == masks_1
    assert [row["level"] for row in cb.history] == [0, 1, 2]
    assert [row["steps"] for row in cb.history] == [STEPS] * 3
    assert cb.history[0]["density"] == 1.0 and cb.history[2]["density"] < cb.history[1]["density"] < 1.0
    assert all("eval_loss" in row["metrics"] for row in cb.history)

    theta_k, start_1 = probe.at_step, probe.begins[1]
    for name, value in start_1.items():  # kept weights, biases, embeddings: θk; pruned weights: 0
        want = theta_k[name] * masks_1[name] if name in masks_1 else theta_k[name]
        assert torch.equal(value, want), name
    moved = [n for n in masks_1 if not torch.equal(probe.ends[1][n], start_1[n])]
    assert moved, "level 1 trained nothing"
    assert not torch.equal(probe.begins[0]["bert.encoder.layer.0.output.dense.weight"],
                           theta_k["bert.encoder.layer.0.output.dense.weight"])  # θk is not θ0


def test_a_level_starts_with_a_fresh_optimizer_and_init_rewinds_to_theta0(tmp_path):
    model, probe = tiny_bert(), Probe(step=0)
    cb = LotteryCallback(PruneSpec(rate=0.2), rewind="init")
    run = trainer(model, tmp_path, [cb, probe])
    for _ in cb.levels(1):
        run.train()
    state = run.optimizer.state
    assert {int(s["step"]) for s in state.values()} == {STEPS}  # Adam's step count restarted with level 1
    for name, param in model.named_parameters():  # pruned gradients were zeroed before every update
        if name in cb.masks:
            assert not state[param]["exp_avg"][~cb.masks[name]].any(), name
    for name, value in probe.begins[1].items():
        want = probe.begins[0][name] * cb.masks[name] if name in cb.masks else probe.begins[0][name]
        assert torch.equal(value, want), name


def test_without_the_callback_pruned_weights_come_back(tmp_path):
    """The check above can fail: masks applied once, then trained without the callback, do not stay zero."""
    model = tiny_bert()
    masks = prune(model, Masks.ones(model), PruneSpec(rate=0.5))
    masks.apply(model)
    trainer(model, tmp_path, []).train()
    with pytest.raises(AssertionError):
        assert_pruned_zero(model, masks)


@pytest.mark.parametrize("spec, rewind, needle", [
    (PruneSpec(exclude=("decoder.*",)), "init",
     "exclude pattern 'decoder.*' matches no prunable parameter of BertForSequenceClassification"),
    (PruneSpec(rates={"lm_head*": 0.5}), "init", "rate pattern 'lm_head*' matches no prunable parameter"),
    (PruneSpec(), 50, f"rewind step 50 is beyond the {STEPS} training steps of level 0"),
])
def test_bad_input_is_refused_before_training(tmp_path, spec, rewind, needle):
    model = tiny_bert()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(TicketlabError) as error:
        trainer(model, tmp_path, [LotteryCallback(spec, rewind=rewind)]).train()
    message = str(error.value)
    assert needle in message and "\n" not in message
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())  # not a step trained


@pytest.mark.parametrize("rewind", ["theta0", -1, 2.5, True])
def test_bad_rewind_values_are_refused(rewind):
    with pytest.raises(TicketlabError, match="rewind must be 'init' or a step count >= 0"):
        LotteryCallback(PruneSpec(), rewind=rewind)


def test_pruning_before_training_is_refused():
    with pytest.raises(TicketlabError, match="level 0 has not trained yet"):
        LotteryCallback().next_level()
