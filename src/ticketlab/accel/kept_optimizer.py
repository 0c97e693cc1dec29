"""KeptOptimizer: the configured optimizer stepping pruned tensors without a separate gradient-mask pass: their
kept entries only (one thread), or through the masked Adam kernel."""

import functools

import torch
from torch import nn

from ticketlab.accel import masked_adam
from ticketlab.accel.torch_mirror import mirrors_torch
from ticketlab.core.masks import Masks
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.optimizers import make_optimizer

# torch's fused CPU Adam computes the last (length mod 16) entries of a tensor by a scalar path whose roundings
# differ from its vector path (exp_avg_sq by an ulp). So KeptOptimizer compacts only tensors whose length is a
# multiple of 16 (every entry on the vector path in the whole-tensor step) and pads the compact length to one (every
# kept entry on the vector path there too): then the bits are the same (checked on one thread, torch 2.13: that
# split is torch's internals, so another torch compacts nothing, torch_mirror.py). Fused SGD was not checked under
# this rule, so SGD keeps the masked whole-tensor step.
KEPT_PAD = 16
KEPT_OPTIMIZERS = ("adam", "adamw")
NO_MASK = torch.empty(0, dtype=torch.uint8)


def compactable(p: torch.Tensor, cfg: TrainConfig) -> bool:
    """Where KeptOptimizer was checked to give the same bits as the masked whole-tensor step (CPU float32), and
    was faster: on one thread (LeNet-300-100 at 20% kept: masked overhead +4.3..6.0% -> +0.3..1.6%). On two threads the
    whole-tensor step runs in parallel and was faster (+6% against +9%); CUDA was not tried.
    The batched trainer measured the same: 8 tickets compacted on two threads, 6.3 ms a step against 5.9 ms.
    Only on the torch whose fused Adam KEPT_PAD was checked against (`mirrors_torch`)."""
    cpu_float32 = p.device.type == "cpu" and p.dtype == torch.float32 and torch.get_num_threads() == 1
    return (cfg.optimizer in KEPT_OPTIMIZERS and cpu_float32 and p.is_contiguous() and p.numel() % KEPT_PAD == 0
            and mirrors_torch())


def _gather(src, index, out):
    """out[j] = src[index[j]] over int32 indices, compiled: 1.8x (1 thread) / 1.4x (2 threads) faster than
    index_select on LeNet-300-100's fc1 at 20% kept."""
    for j in range(index.shape[0]):
        out[j] = src[index[j]]


def _scatter(src, index, out):
    """out[index[j]] = src[j], compiled: 2.3x (1 thread) / 1.3x (2 threads) faster than index_copy_ there."""
    for j in range(index.shape[0]):
        out[index[j]] = src[j]


@functools.cache
def index_kernels():
    """(gather, scatter) compiled by numba (cached on disk), or None without numba."""
    try:
        import numba
    except ImportError:  # pragma: no cover
        return None
    return numba.njit(nogil=True, cache=True)(_gather), numba.njit(nogil=True, cache=True)(_scatter)


def adam_state(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> dict:
    """The state of `p` in a fused Adam/AdamW `optimizer`, initialised first as torch's step initialises it: for
    stepping `p` by our kernels (csrc/adam_math.h) while checkpoints still read the state from the optimizer."""
    state = optimizer.state[p]
    if not state:
        state.update(step=torch.zeros((), dtype=torch.float32, device=p.device),
                     exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                     exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format))
    return state


def count_adam_step(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> dict:
    """`adam_state` with this step counted."""
    state = adam_state(optimizer, p)
    state["step"] += 1
    return state


class KeptOptimizer:
    """The optimizer of `cfg`, stepping pruned tensors without a separate gradient-mask pass, bit for bit as the fused
    whole-tensor step after masking the gradients. Two ways, chosen per tensor by what measured faster:

    - compacted (one CPU thread, `compactable`): each pruned tensor is stepped as a compact copy of its kept entries
      (gathered at the sorted flat indices of its mask, a pure function of the mask): the gradient is gathered
      before each step and the weights are scattered back after it; pruned weights are never touched. The compact
      weights are the master copy (gathering them every step cost more than it saved): `reload` re-reads them. The
      optimizer then reads and writes only the kept entries' state (Adam: 16 bytes per weight per step). Same bits
      as the masked whole-tensor step (see KEPT_PAD).
    - masked (more threads, Adam/AdamW on CPU float32, `masked_adam.kernel()` built): torch's fused step with the
      byte mask applied to the gradient in the same pass (csrc/masked_adam.cpp); the state lives in the inner
      optimizer as torch's own. The kernel then steps the unpruned tensors too (without a mask), all in one call.

    `state_dict` holds the state in the whole tensors' shapes (zeros at pruned entries, as the masked step leaves
    them), so checkpoints are the same as the masked step's and interchangeable with the batched trainer's. `handled`
    are the slots whose gradients need no mask from the caller."""

    def __init__(self, params: list[torch.Tensor], masks: list[torch.Tensor | None], cfg: TrainConfig):
        """`params` with their masks (None: not pruned)."""
        self.compact = {}  # slot index -> (dense param, kept indices, compact param, its gradient)
        self.masked = {}  # slot index -> (param, its mask as bytes): stepped by the masked Adam kernel
        slots = []
        for i, (p, mask) in enumerate(zip(params, masks, strict=True)):
            pruned = mask is not None and not bool(mask.all())
            if not (pruned and compactable(p, cfg)):
                if pruned and cfg.optimizer in KEPT_OPTIMIZERS and masked_adam.usable(p):
                    self.masked[i] = (p, mask.to(device=p.device, dtype=torch.uint8).contiguous())
                slots.append(p)
                continue
            kept = mask.reshape(-1).nonzero().squeeze(1).to(p.device)
            size = max(KEPT_PAD, -(-kept.numel() // KEPT_PAD) * KEPT_PAD)
            compact = torch.zeros(size, dtype=p.dtype, device=p.device)
            self.compact[i] = (p, kept, compact, torch.zeros_like(compact))
            slots.append(compact)
        self.handled = frozenset(self.compact) | frozenset(self.masked)
        self.params = list(params)
        # stepped by the kernel: the masked tensors, and with them the unpruned ones it can step (no mask)
        unpruned = [i for i, p in enumerate(params) if i not in self.handled and masked_adam.usable(p)]
        self.by_kernel = [(params[i], self.masked[i][1] if i in self.masked else NO_MASK)
                          for i in sorted([*self.masked, *(unpruned if self.masked else [])])]
        self.by_torch = len(self.by_kernel) < len(params)  # the rest: the inner optimizer's step
        self.adamw = cfg.optimizer == "adamw"
        self.kernels = index_kernels() if self.compact else None
        self.kept32 = {i: kept.to(torch.int32).numpy() for i, (_, kept, _, _) in self.compact.items()}
        self.optimizer = make_optimizer(slots, cfg)
        self.param_groups = self.optimizer.param_groups
        self.reload()

    @classmethod
    def for_model(cls, model: nn.Module, masks: Masks, cfg: TrainConfig) -> "KeptOptimizer":
        """Over `model.parameters()`; `names` are the parameters it masks itself (the others need masked gradients)."""
        named = list(model.named_parameters())
        optimizer = cls([p for _, p in named], [masks.get(n) for n, _ in named], cfg)
        optimizer.names = frozenset(named[i][0] for i in optimizer.handled)
        return optimizer

    @torch.no_grad()
    def reload(self) -> None:
        """Gather the kept weights from the model: after building, and after the model was loaded (a resume)."""
        for p, kept, compact, _ in self.compact.values():
            torch.index_select(p.view(-1), 0, kept, out=compact[: kept.numel()])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        stepped = self._kernel_step()
        if not self.by_torch:
            return
        held = [p.grad for p in stepped]
        for p in stepped:  # hidden from the inner step
            p.grad = None
        for i, (p, kept, compact, grad) in self.compact.items():
            if p.grad is None:  # skipped by the step, as the whole tensor would be
                compact.grad = None
                continue
            if self.kernels and p.grad.is_contiguous():
                self.kernels[0](p.grad.view(-1).numpy(), self.kept32[i], grad.numpy())
            else:
                torch.index_select(p.grad.reshape(-1), 0, kept, out=grad[: kept.numel()])
            compact.grad = grad
        self.optimizer.step()
        for p, grad in zip(stepped, held, strict=True):
            p.grad = grad
        for i, (p, kept, compact, _) in self.compact.items():
            if compact.grad is None:
                continue
            if self.kernels:
                self.kernels[1](compact.numpy(), self.kept32[i], p.detach().view(-1).numpy())
            else:
                p.view(-1).index_copy_(0, kept, compact[: kept.numel()])

    def _kernel_step(self) -> list[torch.Tensor]:
        """Step the kernel's tensors that have gradients (their masks applied), with the inner optimizer's
        hyperparameters and state (initialised as torch's fused Adam does); returns them."""
        work = [(p, mask) for p, mask in self.by_kernel if p.grad is not None]
        if not work:
            return []
        states = [adam_state(self.optimizer, p) for p, _ in work]
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        masked_adam.kernel().adam_steps_(
            [p.detach() for p, _ in work], [p.grad.contiguous() for p, _ in work], [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states], [mask for _, mask in work], [s["step"] for s in states], group["lr"],
            beta1, beta2, group["weight_decay"], group["eps"], self.adamw)
        return [p for p, _ in work]

    def state_dict(self) -> dict:
        """The inner optimizer's state_dict with compact state tensors spread to their tensors' shapes."""
        sd = self.optimizer.state_dict()
        return {"state": self._map_state(sd["state"], lambda v, p, kept, compact: self._spread(v, p, kept)),
                "param_groups": sd["param_groups"]}

    def load_state_dict(self, sd: dict) -> None:
        state = self._map_state(sd["state"], lambda v, p, kept, compact: self._gather(v, kept, compact))
        self.optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
        self.reload()  # store.load_checkpoint loads the model first

    def _map_state(self, state: dict, convert) -> dict:
        """`state` with the per-entry tensors (moments, not the 0-d step count) of compacted tensors converted."""
        return {i: {k: convert(v, *self.compact[i][:3]) if torch.is_tensor(v) and v.dim() else v for k, v in s.items()}
                if i in self.compact else s for i, s in state.items()}

    @staticmethod
    def _spread(v: torch.Tensor, p: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        dense = torch.zeros(p.numel(), dtype=v.dtype, device=v.device)
        return dense.index_copy_(0, kept, v[: kept.numel()]).reshape(p.shape)

    @staticmethod
    def _gather(v: torch.Tensor, kept: torch.Tensor, compact: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(compact, dtype=v.dtype)
        out[: kept.numel()] = v.reshape(-1).to(kept.device).index_select(0, kept)
        return out
