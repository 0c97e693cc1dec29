"""The report documents: a list of blocks (headings, paragraphs, lists, tables, figures) rendered to Markdown and
to HTML, written as report.md and report.html with the PNG figures (ticketlab.report.figures) beside them."""

import html
import os
import re
import tempfile
from pathlib import Path

from ticketlab.core.files import file_errors, write_bytes_atomic
from ticketlab.errors import TicketlabError
from ticketlab.report.aggregate import Group, fmt_acc, fmt_count, fmt_density, fmt_steps, group_runs
from ticketlab.report.runs import LABELS, Run
from ticketlab.report.text import paper_sentences, summary_sentences

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
    from ticketlab.report import figures  # matplotlib only when figures are drawn

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
    """report.md and report.html in `out_dir`, with the figures as PNG files beside them (relative links).

    Everything is written to a temporary directory beside `out_dir` first, then moved in: the figures, then the
    Markdown and the page, and only then are the figures of an earlier report that this one does not draw removed.
    A report killed at any moment leaves a page whose figures all exist; files not ours are never touched."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TicketlabError(f"--out {out_dir} is a file; give a directory for report.md, report.html and figures")
    with file_errors(out_dir, "write the report into"):
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-") as tmp:
            staging = Path(tmp)
            blocks = report_blocks(runs, staging)
            write_bytes_atomic(staging / "report.md", render_markdown(blocks).encode())
            write_bytes_atomic(staging / "report.html", render_html(blocks).encode())
            new = sorted(p.name for p in staging.iterdir() if p.suffix == ".png")
            for name in [*new, "report.md", "report.html"]:
                os.replace(staging / name, out_dir / name)
            stale = [p for p in out_dir.iterdir() if our_figure(p.name) and p.name not in new]
            for old in stale:  # figures of an earlier report that this one does not draw
                old.unlink(missing_ok=True)
    return out_dir / "report.md", out_dir / "report.html"


def our_figure(name: str) -> bool:
    from ticketlab.report.figures import FIGURES

    names = "|".join(re.escape(n) for n, _, _ in FIGURES)
    return re.match(rf"^(group\d+-)?({names})\.png$", name) is not None
