import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ticketlab.core.masks import Masks
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.core.torch_prune import masks_from_torch_prune, remove_torch_prune, to_torch_prune


def test_import_from_torch_prune(tiny):
    torch_prune.l1_unstructured(tiny.fc1, "weight", amount=0.3)
    expected = tiny.fc1.weight_mask.bool().clone()
    masks = masks_from_torch_prune(tiny, remove=True)
    assert list(masks) == ["fc1.weight"] and torch.equal(masks["fc1.weight"], expected)
    assert isinstance(tiny.fc1.weight, nn.Parameter)  # permanent again: usable with ticketlab
    masks.check(tiny)


def test_export_to_torch_prune_gives_same_output(tiny):
    masks = prune(tiny, Masks.ones(tiny), PruneSpec(rate=0.5, scope="global"))
    x = torch.randn(2, *tiny.input_shape)
    ours = masks.apply(tiny)(x)
    to_torch_prune(tiny, masks)
    assert torch.equal(tiny.fc1.weight_mask.bool(), masks["fc1.weight"])
    assert torch.allclose(tiny(x), ours)
    remove_torch_prune(tiny)
    assert torch.allclose(tiny(x), ours)
