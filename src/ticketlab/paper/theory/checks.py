"""Validation at the boundary of the theory lab: impossible shapes, negative noise, grids too big for memory.

Every check raises TicketlabError with one line naming the bad value and what is allowed."""

from ticketlab.errors import TicketlabError

DEFAULT_MAX_BYTES = 2 * 1024**3  # refuse a batched computation whose tensors would need more than this


def positive(name: str, value, what: str = "a positive integer") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TicketlabError(f"{name} must be {what}, got {value!r}")
    return value


def nonnegative(name: str, value) -> float:
    if not (isinstance(value, int | float) and value >= 0 and value == value and value != float("inf")):
        raise TicketlabError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def fraction(name: str, value, low_open: bool = False) -> float:
    ok = isinstance(value, int | float) and (0 < value <= 1 if low_open else 0 <= value <= 1)
    if not ok:
        raise TicketlabError(f"{name} must be in {'(0, 1]' if low_open else '[0, 1]'}, got {value!r}")
    return float(value)


def teacher_shapes(d: int, K: int, r_star: int, rs=(), Ns=()) -> None:
    """d >= 1, K >= 1, 1 <= r* <= r <= d for every learner width r, N >= 1 for every sample size."""
    positive("d (input dimension)", d)
    positive("K (hidden neurons)", K)
    positive("r_star (teacher inputs per neuron)", r_star)
    if r_star > d:
        raise TicketlabError(f"r_star={r_star} exceeds d={d}: a teacher neuron cannot use more inputs than exist")
    for r in rs:
        positive("r (learner inputs per neuron)", r)
        if r < r_star:
            raise TicketlabError(f"r={r} is below r_star={r_star}: the learner's mask must contain the teacher's "
                                 f"support (allowed: r_star <= r <= d)")
        if r > d:
            raise TicketlabError(f"r={r} exceeds d={d} (allowed: r_star <= r <= d; r = d is the dense network)")
    for n in Ns:
        positive("N (training samples)", n)


def memory(what: str, bytes_needed: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Refuse a batched computation whose estimated footprint exceeds `max_bytes`, quoting the estimate."""
    if bytes_needed > max_bytes:
        raise TicketlabError(f"{what} needs about {bytes_needed / 1024**3:.2f} GiB (limit {max_bytes / 1024**3:.2f} "
                             f"GiB); reduce trials or the largest N, or raise --max-memory")
