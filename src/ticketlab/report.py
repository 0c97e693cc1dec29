"""Tables and figures from run directories (docs/run-directory.md). The report never trains; it only reads.

`load_runs` finds and reads run directories; `group_runs` puts together runs whose configs differ only in their
seeds, and a `Group` aggregates them per level and kind (mean ± std over seeds); `write_report` writes
report.md and report.html with PNG figures beside them (figures.py); `summary_table` is the terminal view.
"""

import html
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from .errors import TicketlabError
from .files import load_tensors, read_json, write_bytes_atomic
from .masks import Masks, describe_density

KINDS = ("imp", "random_pruning", "random_reinit", "oneshot")
LABELS = {"imp": "IMP", "random_pruning": "random pruning", "random_reinit": "random reinit", "oneshot": "one-shot"}
LEVEL_DIR = re.compile(r"^level_(\d+)$")


# -- reading ----------------------------------------------------------------------------------------------------

def read_metrics(path: Path) -> list[dict]:
    """The evaluations of metrics.jsonl; an unterminated last line (a live run mid-append) is skipped."""
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not text.endswith("\n"):
                break
            raise TicketlabError(f"corrupt metrics file {path}: line {i + 1} is not JSON") from None
    return rows


@dataclass
class Stage:
    """One trained network of a run: an IMP level, or a baseline beside it."""

    path: Path
    kind: str
    level: int
    summary: dict | None  # None until training ends: summary.json is written last
    metrics: list[dict]

    @property
    def done(self) -> bool:
        return self.summary is not None

    def masks(self) -> Masks | None:
        path = self.path / "masks.safetensors"
        return Masks.load(path) if path.is_file() else None

    def final_weights(self) -> dict | None:
        path = self.path / "final.safetensors"
        return load_tensors(path)[0] if path.is_file() else None

    def density(self) -> float | None:
        if self.done:
            return self.summary.get("density")
        masks = self.masks()  # unfinished stages still know what they train with
        return masks.density() if masks is not None else None

    def layer_density(self) -> dict[str, float]:
        if self.done and self.summary.get("layer_density"):
            return self.summary["layer_density"]
        masks = self.masks()
        return masks.densities() if masks is not None else {}


def load_stage(path: Path, kind: str, level: int) -> Stage:
    summary = read_json(path / "summary.json") if (path / "summary.json").is_file() else None
    return Stage(path, kind, level, summary, read_metrics(path / "metrics.jsonl"))


@dataclass
class Run:
    """One run directory: its config and every stage found on disk."""

    path: Path
    meta: dict  # config.json as written: hash, config, preset, non_default
    stages: list[Stage]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> dict:
        return self.meta["config"]

    @property
    def seeds(self) -> dict:
        return self.config.get("seeds", {})

    @property
    def group_key(self) -> str:
        """Runs with equal keys differ only in their seeds and are aggregated."""
        return json.dumps({k: v for k, v in self.config.items() if k != "seeds"}, sort_keys=True)

    def stage(self, kind: str, level: int) -> Stage | None:
        return next((s for s in self.stages if s.kind == kind and s.level == level), None)

    @property
    def in_progress(self) -> bool:
        """A stage without summary.json, or fewer levels/baselines on disk than the config asks for.

        With a stopping rule (target_density, max_drop) the number of levels is not known in advance, so only
        the stages on disk count then."""
        if not self.stages or not all(s.done for s in self.stages):
            return True
        lottery = self.config.get("lottery", {})
        levels = sorted({s.level for s in self.stages})
        baselines = lottery.get("baselines") or []
        if any(self.stage(kind, level) is None for level in levels if level >= 1 for kind in baselines):
            return True
        stops_early = lottery.get("target_density") is not None or lottery.get("max_drop") is not None
        planned = lottery.get("levels")
        return not stops_early and isinstance(planned, int) and levels[-1] < planned


def load_run(path: Path) -> Run:
    meta = read_json(path / "config.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise TicketlabError(f"{path / 'config.json'} has no 'config' mapping; not a ticketlab run directory")
    stages = []
    level_dirs = [(int(m[1]), p) for p in path.iterdir() if p.is_dir() and (m := LEVEL_DIR.match(p.name))]
    for level, level_dir in sorted(level_dirs):
        stages.append(load_stage(level_dir, "imp", level))
        baselines = level_dir / "baselines"
        kinds = sorted(p for p in baselines.iterdir() if p.is_dir()) if baselines.is_dir() else []
        stages += [load_stage(p, p.name, level) for p in kinds]
    return Run(path, meta, stages)


def find_run_dirs(path: str | Path) -> list[Path]:
    """`path` itself if it holds config.json, else the run directories one or two levels below it."""
    path = Path(path)
    if not path.is_dir():
        raise TicketlabError(f"no such run directory: {path}")
    if (path / "config.json").is_file():
        return [path]
    found = sorted({p.parent for p in [*path.glob("*/config.json"), *path.glob("*/*/config.json")]})
    found = [p for p in found if not any(q in p.parents for q in found)]  # a run's own subfolders are not runs
    if not found:
        raise TicketlabError(f"{path} is not a run directory and holds none (no config.json one or two levels down)")
    return found


def load_runs(paths) -> list["Run"]:
    """Every run directory named by `paths` (run directories or directories of them), each read once."""
    if isinstance(paths, str | Path):
        paths = [paths]
    dirs: dict[Path, Path] = {}
    for path in paths:
        for run_dir in find_run_dirs(path):
            dirs.setdefault(run_dir.resolve(), run_dir)
    if not dirs:
        raise TicketlabError("no run directories given")
    return [load_run(d) for d in dirs.values()]


# -- aggregation ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over seeds (std 0 for a single seed, which is then not printed)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values) -> "Stat | None":
        values = [float(v) for v in values if v is not None]
        if not values:
            return None
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))

    def format(self, scale: float = 1.0, digits: int = 2, thousands: bool = False, zero_spread: bool = True) -> str:
        """'mean ± std'; just 'mean' for one seed, or for a zero std when `zero_spread` is False."""
        spec = f",.{digits}f" if thousands else f".{digits}f"
        mean = format(self.mean * scale, spec)
        if self.n < 2 or (not zero_spread and self.std == 0):
            return mean
        return f"{mean} ± {format(self.std * scale, spec)}"


def fmt(stat: Stat | None, **kwargs) -> str:
    return "—" if stat is None else stat.format(**kwargs)


def fmt_acc(stat: Stat | None) -> str:
    """Accuracy in percent."""
    return fmt(stat, scale=100.0, digits=2)


def fmt_count(stat: Stat | None) -> str:
    """Parameters and MACs: integers with thousands separators; '± 0' left out (a structural count, not noise)."""
    return fmt(stat, digits=0, thousands=True, zero_spread=False)


def fmt_steps(stat: Stat | None) -> str:
    """Iterations: a measurement, so '± 0' is kept when the seeds agree."""
    return fmt(stat, digits=0, thousands=True)


def fmt_density(stat: Stat | None) -> str:
    return "—" if stat is None else describe_density(stat.mean)


@dataclass
class Row:
    """One kind at one level, aggregated over the seeds of a group."""

    level: int
    kind: str
    density: Stat | None
    params_kept: Stat | None
    macs_kept: Stat | None
    acc: Stat | None  # test accuracy at early stop
    stop: Stat | None  # early-stop iteration
    val_acc: Stat | None  # best validation accuracy: what selects the best ticket (never the test set)
    done: int
    seeds: int
    diverged: int

    @property
    def status(self) -> str:
        parts = [f"in progress ({self.done}/{self.seeds} seeds done)"] if self.done < self.seeds else []
        parts += [f"{self.diverged} diverged"] if self.diverged else []
        return ", ".join(parts) or "done"


def flat_config(config: dict) -> dict[str, object]:
    """{'section.key': value} for every setting but the seeds."""
    return {f"{section}.{key}": value for section, values in config.items() if section != "seeds"
            and isinstance(values, dict) for key, value in values.items()}


def setting(key: str, value) -> str:
    return f"{key}={json.dumps(value) if isinstance(value, dict | list) else value}"


@dataclass
class Group:
    """Runs whose configs differ only in their seeds."""

    runs: list[Run]
    distinct: tuple[str, ...] = ()  # the settings in which the groups of one report differ

    @property
    def config(self) -> dict:
        return self.runs[0].config

    @property
    def label(self) -> str:
        """'<model> on <dataset>', the preset, and the settings that tell this group from the others."""
        flat, preset = flat_config(self.config), self.runs[0].meta.get("preset")
        shown = [setting(k, flat.get(k)) for k in self.distinct[:4]] + (["..."] if len(self.distinct) > 4 else [])
        extra = ([f"preset {preset}"] if preset else []) + shown
        name = f"{flat.get('model.name', '?')} on {flat.get('data.name', '?')}"
        return f"{name} ({'; '.join(extra)})" if extra else name

    @property
    def settings(self) -> str:
        """The non-default settings as written in config.json, seeds left out."""
        non_default = self.runs[0].meta.get("non_default") or {}
        return ", ".join(setting(k, v) for k, v in flat_config(non_default).items()) or "all defaults"

    @property
    def in_progress(self) -> bool:
        return any(run.in_progress for run in self.runs)

    def kinds(self) -> list[str]:
        found = {s.kind for run in self.runs for s in run.stages}
        return [k for k in KINDS if k in found] + sorted(found - set(KINDS))

    def levels(self, kind: str = "imp") -> list[int]:
        return sorted({s.level for run in self.runs for s in run.stages if s.kind == kind})

    def stages(self, kind: str, level: int) -> list[Stage]:
        return [s for run in self.runs if (s := run.stage(kind, level)) is not None]

    def row(self, kind: str, level: int) -> Row:
        stages = self.stages(kind, level)
        done = [s.summary for s in stages if s.done]

        def stat(key):
            return Stat.of(d.get(key) for d in done)

        density = stat("density") or Stat.of(s.density() for s in stages)
        return Row(level, kind, density, stat("params_kept"), stat("macs_kept"), stat("early_stop_test_acc"),
                   stat("early_stop_step"), stat("best_val_acc"), len(done), len(self.runs),
                   sum(d.get("status") == "diverged" for d in done))

    def rows(self, kind: str | None = None) -> list[Row]:
        """Rows by level, then kind (IMP first); only `kind` when given."""
        kinds = [kind] if kind else self.kinds()
        return sorted((self.row(k, lv) for k in kinds for lv in self.levels(k)),
                      key=lambda r: (r.level, kinds.index(r.kind)))

    def best_ticket(self) -> Row | None:
        """The IMP level >= 1 with the highest mean validation accuracy (the sparser one on a tie): chosen on the
        validation split, so its test accuracy is an honest estimate."""
        rows = [r for r in self.rows("imp") if r.level >= 1 and r.acc is not None and r.val_acc is not None]
        return max(rows, key=lambda r: (r.val_acc.mean, r.level), default=None)

    def sparsest_ticket(self) -> Row | None:
        rows = [r for r in self.rows("imp") if r.level >= 1 and r.acc is not None]
        return rows[-1] if rows else None


def group_runs(runs: list[Run]) -> list[Group]:
    """Groups in order of first appearance; runs inside a group ordered by seeds."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group_key, []).append(run)
    out = [Group(sorted(rs, key=seed_order)) for rs in groups.values()]
    for group in out:
        group.distinct = distinct_settings(group, out)
    return out


def distinct_settings(group: Group, groups: list[Group]) -> tuple[str, ...]:
    """The settings that tell `group` from the others with the same model, dataset and preset."""
    def base(g: Group) -> tuple:
        flat = flat_config(g.config)
        return flat.get("model.name"), flat.get("data.name"), g.runs[0].meta.get("preset")

    flats = [flat_config(g.config) for g in groups if base(g) == base(group)]
    keys = sorted({k for flat in flats for k in flat})
    return tuple(k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1)


def seed_order(run: Run) -> tuple:
    """Sort key: init, data, prune seed, then any other seeds by name (numbers compare as numbers)."""
    known = ("init", "data", "prune")
    return tuple(str(run.seeds.get(k)).zfill(12) for k in [*known, *sorted(set(run.seeds) - set(known))])


# -- text -------------------------------------------------------------------------------------------------------

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


# -- paper vs ours: runs of a preset with a row in the talk's Table 2 (ticketlab.table2.PAPER) -------------------

def paper_row(group: Group):
    """The talk's Table 2 row of the group's preset (a `table2.PaperRow`), or None."""
    from .table2 import PAPER

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
    from .table2 import changed_settings

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
    """Columns padded to equal width; the columns in `right` align right (numbers)."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row))
             for row in table]
    return "\n".join(line.rstrip() for line in lines)


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


# -- report documents: a list of blocks rendered to Markdown and to HTML ----------------------------------------

TABLE_HEADER = ["level", "network", "kept", "params kept", "MACs kept", "test acc. at early stop (%)",
                "early-stop iteration", "seeds", "status"]


def level_table(group: Group) -> list[list[str]]:
    return [[str(r.level), LABELS.get(r.kind, r.kind), fmt_density(r.density), fmt_count(r.params_kept),
             fmt_count(r.macs_kept), fmt_acc(r.acc), fmt_steps(r.stop), f"{r.done}/{r.seeds}", r.status]
            for r in group.rows()]


def run_line(run: Run) -> str:
    known = [k for k in ("init", "data", "prune") if k in run.seeds]
    seeds = ", ".join(f"{k}={run.seeds[k]}" for k in [*known, *sorted(set(run.seeds) - set(known))])
    return f"`{run.name}` — seeds {seeds or '?'}{' — in progress' if run.in_progress else ''}"


def group_blocks(group: Group, prefix: str, out_dir: Path) -> list[tuple]:
    from . import figures  # matplotlib only when figures are drawn

    blocks: list[tuple] = [("h2", group.label), ("p", f"Settings (non-default): {group.settings}."),
                           ("list", [run_line(r) for r in group.runs]), ("h3", "Summary")]
    blocks += [("p", s) for s in summary_sentences(group)]
    blocks += [("p", s) for s in paper_sentences(group)]
    blocks += [("h3", "Results per level"), ("table", TABLE_HEADER, level_table(group)), ("h3", "Figures")]
    for name, draw, caption in figures.FIGURES:
        filename = f"{prefix}{name}.png"
        png = draw(group)
        if png is None:
            blocks.append(("p", f"{caption}: not enough finished stages yet."))
        else:
            write_bytes_atomic(out_dir / filename, png)
            blocks.append(("figure", filename, caption))
    return blocks


def report_blocks(runs: list[Run], out_dir: Path) -> list[tuple]:
    groups = group_runs(runs)
    blocks: list[tuple] = [("h1", "ticketlab report"), (
        "p", f"{len(runs)} run{'s' if len(runs) > 1 else ''} in {len(groups)} group{'s' if len(groups) > 1 else ''} "
             "(runs that differ only in their seeds form a group). Accuracy is the test accuracy at the early-stop "
             "iteration (minimum validation loss), in percent; kept = fraction of prunable weights kept.")]
    for i, group in enumerate(groups):
        blocks += group_blocks(group, f"group{i + 1}-" if len(groups) > 1 else "", out_dir)
    return blocks


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(kind[1])} {args[0]}")
        elif kind == "p":
            out.append(args[0])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in args[0]))
        elif kind == "table":
            header, rows = args
            lines = [header, ["---"] * len(header), *rows]
            out.append("\n".join("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in lines))
        elif kind == "figure":
            out.append(f"![{args[1]}]({args[0]})\n\n*{args[1]}*")
    return "\n\n".join(out) + "\n"


CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1, h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; } h2 { margin-top: 2em; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f4f6f8; } td:nth-child(2), td:nth-child(9) { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; } code { background: #f4f4f4; padding: 0 3px; }
"""


def _html_text(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render_html(blocks: list[tuple]) -> str:
    out = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3", "p"):
            out.append(f"<{kind}>{_html_text(args[0])}</{kind}>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_html_text(i)}</li>" for i in args[0]) + "</ul>")
        elif kind == "table":
            header, rows = args
            head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "figure":
            src, caption = html.escape(args[0], quote=True), html.escape(args[1])
            out.append(f'<figure><img src="{src}" alt="{caption}"><figcaption>{caption}</figcaption></figure>')
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>ticketlab report</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def write_report(runs: list[Run], out_dir) -> tuple[Path, Path]:
    """report.md and report.html in `out_dir`, with the figures as PNG files beside them (relative links)."""
    from .figures import FIGURES

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ours = re.compile(rf"^(group\d+-)?({'|'.join(re.escape(name) for name, _, _ in FIGURES)})\.png$")
    for old in out_dir.iterdir():  # figures of an earlier report here would be stale; nothing else is touched
        if ours.match(old.name):
            old.unlink()
    blocks = report_blocks(runs, out_dir)
    md, page = out_dir / "report.md", out_dir / "report.html"
    write_bytes_atomic(md, render_markdown(blocks).encode())
    write_bytes_atomic(page, render_html(blocks).encode())
    return md, page
