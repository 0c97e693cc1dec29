"""The talk's Table 2 as published: `PAPER` maps each preset of a row to the row's figures as the talk quotes them
(the project references, seed_tables.md), and `changed_settings` says how a run differs from its preset."""

from dataclasses import dataclass

from ticketlab.engine.config import NOT_HASHED
from ticketlab.report.aggregate import flat_config

DATA_ROOT = "--set data.root=DIR"
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist puts the IDX files


@dataclass(frozen=True)
class PaperRow:
    """One row of the talk's Table 2: accuracies in percent, as quoted."""

    network: str
    dataset: str
    before: float
    after: float
    source: str
    note: str = ""
    needs: str = DATA_ROOT  # what `ticketlab run PRESET` needs besides the preset

    def command(self, preset: str) -> str:
        return f"ticketlab run {preset} {self.needs}"


FRANKLE = "Frankle & Carbin, ICLR 2019"
UGS = "Chen et al., ICML 2021 (unified GNN lottery tickets)"
LENET_ROW = dict(network="LeNet-5", dataset="MNIST", before=98.05, after=98.41, source=FRANKLE)
CORA_ROW = dict(network="ResGCN-28", dataset="Cora", before=80.02, after=81.88, source=UGS)

# In the talk's order. Two rows have a second preset: the network the cited paper actually used.
PAPER: dict[str, PaperRow] = {
    "lenet5-mnist": PaperRow(**LENET_ROW, note="the talk labels the row LeNet-5, but Frankle & Carbin's MNIST network "
                             "is LeNet-300-100 (preset lenet300-mnist); lenet5-mnist trains the Caffe LeNet-5 with "
                             "their LeNet recipe"),
    "lenet300-mnist": PaperRow(**LENET_ROW, note="LeNet-300-100: the network behind the talk's LeNet-5 row"),
    "lenet300-fashion-mnist": PaperRow(
        "LeNet-300-100", "Fashion-MNIST (MNIST stand-in)", 98.05, 98.41, FRANKLE,
        needs=f"--set data.root={FASHION_MNIST} --seeds 0 1 2",
        note="real-data stand-in for the MNIST row: full-size Fashion-MNIST installs offline (Debian's "
             "dataset-fashion-mnist), MNIST does not; the paper's figures are MNIST's, so compare the ticket's gain "
             "over dense (the paired column), not the accuracy level"),
    "lenet5-fashion-mnist": PaperRow(
        "LeNet-5", "Fashion-MNIST (MNIST stand-in)", 98.05, 98.41, FRANKLE,
        needs=f"--set data.root={FASHION_MNIST} --seeds 0 1 2",
        note="the convolutional real-data stand-in for the MNIST row (Caffe LeNet-5, 5K iterations, 5 levels); the "
             "paper's figures are MNIST's, so compare the ticket's gain over dense, not the accuracy level"),
    "conv6-cifar10": PaperRow("Conv-6", "CIFAR-10", 77.52, 80.02, FRANKLE),
    "resnet50-cifar10": PaperRow("ResNet-50", "CIFAR-10", 94.31, 94.82, "Chen et al.",
                                 note="the talk cites Chen et al. without naming the paper; the preset follows the "
                                      "CIFAR recipe of that group's public lottery-ticket code (docs/table2.md)"),
    "resgcn28-cora": PaperRow(**CORA_ROW),
    "gcn-cora": PaperRow(**CORA_ROW, note="the unified GNN lottery-ticket code trains Cora with a 2-layer GCN; "
                         "ResGCN-28 is its network for the OGB graphs"),
    "bert-mnli": PaperRow("BERT", "MNLI", 82.39, 83.08, "Chen et al., NeurIPS 2020 (BERT lottery tickets)",
                          note="the BERT paper's own dense MNLI figure is 82.4",
                          needs="--set data.root=DIR --set model.path=BERT_DIR"),
}

# Settings that do not change what a run measures (those the run's hash leaves out), not "changed from the preset".
IGNORED = {f"{section}.{key}" for section, key in NOT_HASHED}


def changed_settings(config: dict, preset: str) -> dict[str, object]:
    """{'section.key': value} of the run's settings that differ from the preset (seeds and IGNORED left out)."""
    from ticketlab.engine.presets import PRESETS, load_preset

    if preset not in PRESETS:
        return {}
    ours, published = flat_config(config), flat_config(load_preset(preset).to_dict())
    return {k: v for k, v in ours.items() if k not in IGNORED and published.get(k, v) != v}
