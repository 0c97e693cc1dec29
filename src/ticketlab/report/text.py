"""The terminal view of a report: the summary sentences, the paper-vs-ours lines for presets with a row in the
talk's Table 2 (ticketlab.report.published.PAPER), and `summary_table`."""

from ticketlab.core.counting.render import aligned_table
from ticketlab.report.aggregate import Group, Row, fmt_acc, fmt_density, fmt_steps, group_runs, setting
from ticketlab.report.published import PAPER, changed_settings
from ticketlab.report.runs import LABELS, Run


def _pp(row: Row, dense: Row | None) -> str:
    if row.acc is None or dense is None or dense.acc is None:
        return ""
    return f" ({100 * (row.acc.mean - dense.acc.mean):+.2f} pp vs dense)"


def summary_sentences(group: Group) -> list[str]:
    """Dense accuracy, the best ticket, random pruning at the same density: as measured, nothing inferred."""
    dense = group.row("imp", 0) if 0 in group.levels("imp") else None
    n = len(group.runs)
    out = [f"{n} seed{'s' if n > 1 else ''}; numbers are mean ± sample std over seeds, accuracies in percent."]
    if group.in_progress:
        out.append("Some stages are still in progress: the numbers cover the finished stages only.")
    if dense is None or dense.acc is None:
        return out + ["The dense network (level 0) has not finished yet."]
    out.append(f"Dense network (level 0): test accuracy at early stop {fmt_acc(dense.acc)}%, "
               f"early stop at iteration {fmt_steps(dense.stop)}.")
    best = group.best_ticket()
    if best is None:
        return out + ["No pruned IMP level has finished yet."]
    out.append(f"Best ticket (highest mean validation accuracy among levels ≥ 1): level {best.level}, "
               f"{fmt_density(best.density)}: {fmt_acc(best.acc)}%{_pp(best, dense)}, "
               f"early stop at iteration {fmt_steps(best.stop)}.")
    rand = group.row("random_pruning", best.level) if best.level in group.levels("random_pruning") else None
    if rand is None or rand.acc is None:
        out.append(f"Random pruning has no finished result at level {best.level}.")
    else:
        out.append(f"Random pruning at the same level, {fmt_density(rand.density)}: {fmt_acc(rand.acc)}%"
                   f"{_pp(rand, dense)}, early stop at iteration {fmt_steps(rand.stop)}.")
    return out


# -- paper vs ours: runs of a preset with a row in the talk's Table 2 (ticketlab.report.published.PAPER) -----------

def paper_row(group: Group):
    """The talk's Table 2 row of the group's preset (a `PaperRow`), or None."""
    return PAPER.get(group.runs[0].meta.get("preset"))


def paper_cell(paper, row: Row) -> str:
    """The paper's figure beside one of our rows: before pruning beside level 0, after pruning beside IMP tickets."""
    if paper is None or row.kind != "imp":
        return ""
    return f"{paper.before if row.level == 0 else paper.after:.2f}"


def paper_sentences(group: Group) -> list[str]:
    """The paper's figures, our difference to them, and whether our settings are the preset's."""
    paper = paper_row(group)
    if paper is None:
        return []
    preset = group.runs[0].meta.get("preset")
    out = [f"Paper (the talk's Table 2, {paper.network} on {paper.dataset}, {paper.source}): "
           f"{paper.before:.2f}% before pruning, {paper.after:.2f}% after."]
    ours = [(label, r, figure) for label, r, figure in (
        ("dense", group.row("imp", 0) if 0 in group.levels("imp") else None, paper.before),
        ("best ticket", group.best_ticket(), paper.after)) if r is not None and r.acc is not None]
    if ours:
        out.append("Ours vs paper: " + "; ".join(f"{label} {fmt_acc(r.acc)}% ({100 * r.acc.mean - figure:+.2f} pp)"
                                                  for label, r, figure in ours) + ".")
    changed = changed_settings(group.config, preset)
    if changed:
        out.append(f"These runs change the preset {preset} ({', '.join(setting(k, v) for k, v in changed.items())}): "
                   "not the published setup.")
    if paper.note:
        out.append(f"Note: {paper.note}.")
    return out


def summary_rows(group: Group) -> list[tuple[str, Row]]:
    """Table-2 rows: dense, the best ticket and the sparsest one, each with every baseline at its level."""
    rows = [("dense (level 0)", group.row("imp", 0))] if 0 in group.levels("imp") else []
    best, sparsest = group.best_ticket(), group.sparsest_ticket()
    for label, ticket in (("best IMP ticket", best), ("sparsest IMP ticket", sparsest)):
        if ticket is None or (label.startswith("sparsest") and best is not None and ticket.level == best.level):
            continue
        rows.append((f"{label} (level {ticket.level})", ticket))
        rows += [(f"{LABELS.get(k, k)} (level {ticket.level})", group.row(k, ticket.level))
                 for k in group.kinds() if k != "imp" and ticket.level in group.levels(k)]
    return rows


def align(table: list[list[str]], right: set[int]) -> str:
    """`table` (header first) in columns padded to equal width, no rule under the header; the columns in `right`
    align right (numbers)."""
    return "\n".join(aligned_table(table[0], table[1:], right, rule=False))


def summary_table(runs: list[Run]) -> str:
    """Per group: dense vs best ticket vs the baselines at the same density, mean ± std over seeds."""
    blocks = []
    for group in group_runs(runs):
        n = len(group.runs)
        title = f"{group.label} — {n} seed{'s' if n > 1 else ''}{' (in progress)' if group.in_progress else ''}"
        paper = paper_row(group)
        extra = ["paper (%)"] if paper else []  # the talk's Table 2 figure beside ours
        table = [["network", "kept", "test acc. at early stop (%)", *extra, "early-stop iteration", "seeds"]]
        table += [[name, fmt_density(r.density), fmt_acc(r.acc), *([paper_cell(paper, r)] if paper else []),
                   fmt_steps(r.stop), f"{r.done}/{r.seeds}"] for name, r in summary_rows(group)]
        body = align(table, right={2, 3, 4} if paper else {2, 3}) if len(table) > 1 else "(no finished stage yet)"
        lines = paper_sentences(group)[:3]
        blocks.append("\n".join([title, body, *lines]))
    return "\n\n".join(blocks)
