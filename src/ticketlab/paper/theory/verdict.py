"""A verdict record: what each experiment's results.json says about the claim it tests, in one vocabulary.

agrees        the measurement supports the claim as stated (form and, where claimed, the number)
partly        the direction (or a part) agrees, the stated form or number does not
disagrees     the measurement contradicts the claim
inconclusive  the data cannot decide (too few crossings, intervals too wide, ...)
"""

from ticketlab.errors import TicketlabError

WORDS = ("agrees", "partly", "disagrees", "inconclusive")


def verdict(claim: str, word: str, evidence: str, figure: str | None = None, variant: str | None = None) -> dict:
    if word not in WORDS:
        raise TicketlabError(f"verdict must be one of {', '.join(WORDS)}, got {word!r}")
    return {"claim": claim, "verdict": word, "evidence": evidence, "figure": figure, "variant": variant}


def interval_word(ci: tuple[float, float], sign: int) -> str:
    """'agrees' when the whole interval has the claimed sign (+1 / -1), 'disagrees' when it has the other,
    'inconclusive' when it contains 0 or is undefined."""
    lo, hi = ci
    if not (lo == lo and hi == hi):
        return "inconclusive"
    if (sign > 0 and lo > 0) or (sign < 0 and hi < 0):
        return "agrees"
    if (sign > 0 and hi < 0) or (sign < 0 and lo > 0):
        return "disagrees"
    return "inconclusive"


def no_effect_word(ci: tuple[float, float], margin: float) -> str:
    """For a claimed absence of an effect (an exponent of d = 0): 'agrees' when the whole interval lies within
    ±margin, 'disagrees' when it excludes 0, else 'inconclusive' (contains 0 but too wide to tell)."""
    lo, hi = ci
    if not (lo == lo and hi == hi):
        return "inconclusive"
    if -margin <= lo and hi <= margin:
        return "agrees"
    return "disagrees" if lo > 0 or hi < 0 else "inconclusive"
