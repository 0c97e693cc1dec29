"""FusedChain: a run of Linear/ReLU layers run at batch 1 as one numba call."""

import numpy as np
import torch
from torch import nn

from ticketlab.deploy.sparse_inference.csr import CSRWeight
from ticketlab.deploy.sparse_inference.kernels import numba_kernels
from ticketlab.deploy.sparse_inference.layers import SparseLayer, SparseLinear

_FLOAT32 = np.dtype(np.float32)


class FusedChain(nn.Module):
    """A run [Flatten ->] Linear -> ReLU -> Linear ... of an nn.Sequential, run at batch 1 as one compiled call: each
    Python-level module call and tensor conversion costs about a microsecond, which at batch 1 is what a small MLP
    spends most of its time on. Each layer runs CSR or, where `dense` says so, as a dense matrix-vector product
    inside the same call (at 50% kept, LeNet-300-100's layers are faster dense). Other batch sizes, and batch 1 when
    `enabled` is False, run the original modules (`self.layers`, each with its own plan)."""

    def __init__(self, layers: nn.Sequential, masks: dict[str, torch.Tensor], dense: frozenset[str] = frozenset()):
        super().__init__()
        self.layers = layers
        self.enabled = True
        children = list(layers.children())
        self.flattens = bool(children) and isinstance(children[0], nn.Flatten) and (
            children[0].start_dim, children[0].end_dim) == (1, -1)
        linears = [(n, m.dense if isinstance(m, SparseLayer) else m) for n, m in layers.named_children()
                   if isinstance(m, nn.Linear | SparseLinear)]
        relu_after = [isinstance(nxt, nn.ReLU) for m, nxt in zip(children, [*children[1:], None], strict=True)
                      if isinstance(m, nn.Linear | SparseLinear)]
        self.names = [n for n, _ in linears]
        self.dense_layers = frozenset(dense)
        self.in_features = linears[0][1].in_features
        self.meta, self.ints, self.floats = self.pack(linears, masks, relu_after)
        self.kernel = numba_kernels()["chain"]
        self.kernel(self.meta, self.ints, self.floats, np.zeros((1, self.in_features), dtype=np.float32))  # compile

    def pack(self, linears, masks, relu_after):
        """All layers in three flat arrays (one numba call with few arguments: each costs dispatch time): `meta`
        (int64, a row per layer), `ints` (CSR row pointers and column indices, uint32: see numpy_parts), `floats`
        (values, biases)."""
        meta, ints, floats = [], [], []
        n_ints = n_floats = 0
        for (name, m), relu in zip(linears, relu_after, strict=True):
            weight = m.weight.detach()
            bias = m.bias.detach() if m.bias is not None else torch.zeros(m.out_features)
            if name in self.dense_layers:
                parts_i, parts_f = [], [weight.contiguous().reshape(-1), bias]
                ptr = idx = 0
                kind = 1
            else:
                csr = CSRWeight(weight, masks.get(name, torch.ones_like(weight, dtype=torch.bool)), None)
                parts_i, parts_f = [csr.indptr, csr.indices], [csr.values, bias]
                ptr, idx = n_ints, n_ints + csr.indptr.numel()
                kind = 0
            val, bias_at = n_floats, n_floats + parts_f[0].numel()
            meta.append([kind, m.out_features, m.in_features, ptr, idx, val, bias_at, int(relu)])
            ints += parts_i
            floats += parts_f
            n_ints += sum(t.numel() for t in parts_i)
            n_floats += sum(t.numel() for t in parts_f)
        ints = torch.cat([t.to(torch.int32) for t in ints] or [torch.zeros(1, dtype=torch.int32)])
        return (torch.tensor(meta, dtype=torch.int64).numpy(), ints.numpy().view(np.uint32),
                torch.cat([t.to(torch.float32) for t in floats]).numpy())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The checks run on the NumPy view (its attributes cost a third of a tensor's): at batch 1 they were 15% of
        # the call. x.numpy() refuses tensors that require grad (taken here only in no-grad mode, detached),
        # tensors not on the CPU and dtypes NumPy lacks.
        if self.enabled:
            try:
                a = x.numpy()
            except (RuntimeError, TypeError):
                a = None
                if x.requires_grad and x.is_cpu and x.dtype is torch.float32 and not torch.is_grad_enabled():
                    a = x.detach().numpy()
            if (a is not None and a.dtype is _FLOAT32 and a.size == self.in_features and a.shape[0] == 1
                    and (self.flattens or a.ndim == 2)):
                return torch.from_numpy(self.kernel(self.meta, self.ints, self.floats, a))
        return self.layers(x)

    def extra_repr(self) -> str:
        kinds = ", ".join(f"{n} {'dense' if n in self.dense_layers else 'csr'}" for n in self.names)
        return f"batch 1 fused: {kinds}" if self.enabled else "fused call disabled"
