"""Where a sparse convolution's kept entries read (batching/sparse_conv.py, csrc/sparse_conv.cpp).

The kernel pads each sample's input and splits it into its stride phases, (sy, sx, C, Hq, Wq) flat: phase (py, px)
holds the padded rows py, py + sy, ... and columns px, px + sx, ..., so every stride becomes 1. A kept entry (o, c, ky,
kx) then reads one plane shifted by (shy, shx): with (shy, py) = divmod(ky * dy, sy) and (shx, px) = divmod(kx * dx,
sx), output i = y * Wq + x reads the sample's flat stack at off + i, off = ((py * sx + px) * C + c) * Hq * Wq + shy *
Wq + shx. Output rows are Wq wide: columns from Wo on are junk (cropped), never read by a valid output's tap. Hq has
rows to spare so that the kernel's padded chunks stay inside the sample.

Compact layout (stride 1, outputs as wide as the input, widths dividing 32, chunks of whole rows, AVX-512): rows are
W wide, without padding columns; a tap reading past a row's end is masked off per entry (`masks`: the lanes read, for
a chunk's even and odd vectors) instead of reading zeros, so no junk columns are computed (8x8 planes: 64 outputs per
plane, not 80; 32x32: 1024, not 1088) and rows start on whole vectors. shx = kx * dx - left can then be
negative: GUARD zeros before the first plane.

Backward, input plane j reads the output's gradient at j - shift, padded with zero rows above and below (and zero
junk columns), so the input's gradient is the same kernel over the transposed entries (`colptr`, `off_back`)."""

from types import SimpleNamespace

import torch

from ticketlab.accel.batching.sparse_linear import pointers
from ticketlab.errors import TicketlabError

L1_BUDGET = 24 * 1024  # bytes of L1 (48 KiB per core here) for the inputs a block of entries reads
MIN_ENTRIES = 12  # entries of a row per block, on average: each block costs a row a pass over its partial sums
GUARD = 16  # zeros before a sample's planes (compact layout)


def pair(value, what: str, least: int) -> tuple[int, int]:
    both = (value, value) if isinstance(value, int) else tuple(value)
    if len(both) != 2 or not all(isinstance(v, int) and v >= least for v in both):
        raise TicketlabError(f"sparse convolution: {what} {value!r}; allowed: an int >= {least} or a pair of them")
    return both


class ConvGeometry:
    """A Conv2d's weight shape (O, C, kh, kw), stride, dilation and padding as (top, bottom, left, right)."""

    def __init__(self, weight_shape: tuple, stride, padding, dilation):
        self.out_channels, self.in_channels, self.kh, self.kw = weight_shape
        self.stride, self.dilation = pair(stride, "stride", 1), pair(dilation, "dilation", 1)
        reach = (self.dilation[0] * (self.kh - 1), self.dilation[1] * (self.kw - 1))
        if padding == "same":  # torch's: the odd pixel of an even kernel's padding goes after
            if self.stride != (1, 1):
                raise TicketlabError(f"sparse convolution: padding 'same' with stride {stride}; allowed: stride 1")
            self.sides = (reach[0] // 2, reach[0] - reach[0] // 2, reach[1] // 2, reach[1] - reach[1] // 2)
            return
        py, px = pair(0 if padding == "valid" else padding, "padding ('valid', 'same' or)", 0)
        self.sides = (py, py, px, px)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def blocks_of(channels: int, region: int, per_row: float) -> int:
    """Into how many blocks of (near) equal size to split `channels` planes so that each block's `region` floats per
    plane fit in L1_BUDGET, keeping MIN_ENTRIES of a row's `per_row` entries per block. Block b holds the channels c
    with c * blocks // channels == b."""
    return max(1, min(channels, ceil_div(channels * region * 4, L1_BUDGET), int(per_row / MIN_ENTRIES)))


def lane_masks(shift: torch.Tensor, width: int) -> torch.Tensor:
    """Compact layout: for entries reading columns x + shift of rows `width` wide (width divides 32), the lanes
    whose column is inside the row, of two 16-lane vectors side by side (bit l: lane l; a chunk's even vectors take
    the low half, its odd ones the high half), as int32."""
    x = torch.arange(32) % width + shift.unsqueeze(1)
    bits = (((x >= 0) & (x < width)).to(torch.int64) << torch.arange(32)).sum(1)
    return torch.where(bits >= 2**31, bits - 2**32, bits).to(torch.int32)  # the same 32 bits, as a signed int


class Layout:
    """The kernel's view of a layer for inputs (H, W): the padded, phase-split planes (`geometry`), the entries'
    offsets forward (`off`, in the values' order, by rows and blocks `ptr`; `grad_ptr` for the values' gradient) and
    backward (`off_back` over input planes `colptr`, values at `perm`), and lane masks (compact layout)."""

    def __init__(self, g: ConvGeometry, index: torch.Tensor, copies: int, height: int, width: int, kernel):
        (sy, sx), (dy, dx), (top, bottom, left, right) = g.stride, g.dilation, g.sides
        self.g, self.height, self.width, self.copies, self.kernel = g, height, width, copies, kernel
        hp, wp = height + top + bottom, width + left + right
        self.ho, self.wo = (hp - dy * (g.kh - 1) - 1) // sy + 1, (wp - dx * (g.kw - 1) - 1) // sx + 1
        if self.ho < 1 or self.wo < 1:
            raise TicketlabError(f"sparse convolution: input {height}x{width} is smaller than the kernel "
                                 f"{g.kh}x{g.kw} (dilation {g.dilation}, padding {g.sides})")
        self.compact = (kernel.masked_loads() and (sy, sx) == (1, 1) and self.wo == width and 32 % width == 0
                        and all(kernel.chunk_length(rows * width) % width == 0 for rows in (self.ho, height))
                        and left <= GUARD)
        # wq: a plane row's width; left: the column of the input's first one in it
        self.wq, self.left = (width, 0) if self.compact else (ceil_div(wp, sx), left)
        self.length, self.guard = self.ho * self.wq, GUARD if self.compact else 0
        self.padded = kernel.padded_length(self.length)
        self.shift_max = dy * (g.kh - 1) // sy * self.wq + dx * (g.kw - 1) // sx - (left if self.compact else 0)
        self.shift_min = -left if self.compact else 0
        self.hq = max(ceil_div(hp, sy), ceil_div(self.shift_max + self.padded, self.wq))
        t = self.taps(index)
        self.masks = lane_masks(t.shx, width) if self.compact else torch.empty(0, dtype=torch.int32)
        phase = t.plane // g.in_channels  # the kernel builds the phases read only (a 1x1 kernel of stride 2: one)
        self.phases = sum(1 << p for p in phase.unique().tolist())
        self.forward_entries(t)
        self.backward_entries(t)
        self.check_reads()

    def taps(self, index: torch.Tensor) -> SimpleNamespace:
        """Per kept entry: its copy, out channel o, in channel c, input plane and shift (shx: its column part)."""
        g, (sy, sx), (dy, dx) = self.g, self.g.stride, self.g.dilation
        per_copy = g.out_channels * g.in_channels * g.kh * g.kw
        copy, within = index // per_copy, index % per_copy
        ty, tx = within // g.kw % g.kh * dy, within % g.kw * dx  # the taps' offsets in the padded input
        shy, shx = ty // sy, tx // sx - (g.sides[2] if self.compact else 0)
        c = within // (g.kh * g.kw) % g.in_channels
        plane = (ty % sy * sx + tx % sx) * g.in_channels + c
        return SimpleNamespace(copy=copy, within=within, o=within // (g.in_channels * g.kh * g.kw), c=c, plane=plane,
                               shift=shy * self.wq + shx, shx=shx, per_copy=per_copy)

    def forward_entries(self, t: SimpleNamespace) -> None:
        """Offsets into a sample's stack, by row (copy, out channel), then by blocks of input channels (a block's
        planes stay in L1 while summed); short chunks are summed for two samples at once, and the values' gradient
        reads several samples at once: smaller blocks."""
        g, (sy, sx) = self.g, self.g.stride
        self.off = self.guard + t.plane * self.hq * self.wq + t.shift
        region = sy * sx * (self.kernel.chunk_length(self.length) + self.shift_max - self.shift_min)
        per_row, row = len(self.off) / (self.copies * g.out_channels), t.copy * g.out_channels + t.o
        self.blocks = blocks_of(g.in_channels, region * self.kernel.sum_samples(self.length), per_row)
        self.grad_blocks = blocks_of(g.in_channels, region * self.kernel.grad_samples(self.length), per_row)
        self.ptr, self.grad_ptr = (pointers(row * b + t.c * b // g.in_channels, self.copies * g.out_channels * b)
                                   for b in (self.blocks, self.grad_blocks))

    def backward_entries(self, t: SimpleNamespace) -> None:
        """The transposed entries: input plane j sums output gradient planes read at j - shift. Phase rows r0..r1
        cover the unpadded input; the output's gradient gets `top_rows` zero rows above (reads at j - shift >= 0)
        and `below` zero rows below (reads past its last row)."""
        g, (sy, sx), top = self.g, self.g.stride, self.g.sides[0]
        self.r0, r1 = top // sy, ceil_div(top + self.height, sy)
        self.back_length, j0 = (r1 - self.r0) * self.wq, self.r0 * self.wq
        self.top_rows = max(0, ceil_div(self.shift_max - j0, self.wq))
        reach = j0 - self.shift_min + self.kernel.padded_length(self.back_length)
        self.below = max(0, ceil_div(reach, self.wq) - self.ho, ceil_div(self.padded, self.wq) - self.ho)
        grad_plane = (self.top_rows + self.ho + self.below) * self.wq
        in_rows = sy * sx * g.in_channels
        back_row = t.copy * in_rows + t.plane
        self.perm = torch.argsort(back_row * t.per_copy + t.within)  # by input plane, then the values' order
        region = self.kernel.chunk_length(self.back_length) + self.shift_max - self.shift_min
        region *= self.kernel.sum_samples(self.back_length)
        self.back_blocks = blocks_of(g.out_channels, region, len(self.perm) / (self.copies * in_rows))
        back_key = back_row * self.back_blocks + t.o * self.back_blocks // g.out_channels
        self.colptr = pointers(back_key[self.perm], self.copies * in_rows * self.back_blocks)
        self.off_back = (t.o * grad_plane + self.top_rows * self.wq + j0 - t.shift)[self.perm]
        # compact: lane x reads the output's gradient at column x - shx
        self.masks_back = lane_masks(-t.shx, self.width)[self.perm] if self.compact else self.masks

    def check_reads(self) -> None:
        """That every read of the kernel, in[off + i] for i < the padded length it computes, stays inside its sample:
        the kernel trusts the offsets (a check per call cost as much as a small layer's convolution of one sample)."""
        g = self.g
        stack = self.guard + g.stride[0] * g.stride[1] * g.in_channels * self.hq * self.wq
        grads = g.out_channels * (self.top_rows + self.ho + self.below) * self.wq
        for off, reach, size in ((self.off, self.padded, stack),
                                 (self.off_back, self.kernel.padded_length(self.back_length), grads)):
            if len(off) and (int(off.min()) < 0 or int(off.max()) + reach > size):
                raise RuntimeError(f"sparse convolution: an offset reads outside the sample ({size} values): a bug")

    def forward(self, x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor, relu: bool = False,
                pool: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernel's forward pass over samples x (N, C, H, W) of this size: (y, each pooling window's choice)."""
        return self.kernel.forward(x, values, bias, self.ptr, self.blocks, self.off, self.masks, self.geometry(), relu,
                                   pool)

    def geometry(self) -> list[int]:
        """The numbers the kernel takes (csrc/sparse_conv.cpp, Geometry), in its order."""
        g = self.g
        return [g.in_channels, self.height, self.width, *g.stride, g.sides[0], self.left, self.hq, self.wq,
                g.out_channels, self.ho, self.wo, self.r0, self.back_length // self.wq, self.top_rows, self.below,
                self.guard, self.phases]
