"""Tables and figures from run directories (docs/report.md). The report never trains; it only reads.

One concept a file: runs.py reads run directories (`load_runs`); aggregate.py puts together runs whose configs
differ only in their seeds, and a `Group` aggregates them per level and kind (mean ± std over seeds); text.py is the
terminal view (`summary_table`, with the paper's figures for presets in the talk's Table 2); document.py writes
report.md and report.html with PNG figures beside them (ticketlab.report.figures).
"""

from ticketlab.engine.store import read_metrics
from ticketlab.report.aggregate import (
    Group,
    Row,
    Stat,
    distinct_settings,
    flat_config,
    fmt,
    fmt_acc,
    fmt_count,
    fmt_density,
    fmt_steps,
    group_runs,
    seed_order,
    setting,
)
from ticketlab.report.document import render_html, render_markdown, report_blocks, write_report
from ticketlab.report.runs import KINDS, LABELS, Run, Stage, find_run_dirs, load_run, load_runs, load_stage
from ticketlab.report.text import align, paper_row, paper_sentences, summary_rows, summary_sentences, summary_table

__all__ = ["Group", "KINDS", "LABELS", "Row", "Run", "Stage", "Stat", "align", "distinct_settings", "find_run_dirs",
           "flat_config", "fmt", "fmt_acc", "fmt_count", "fmt_density", "fmt_steps", "group_runs", "load_run",
           "load_runs", "load_stage", "paper_row", "paper_sentences", "read_metrics", "render_html", "render_markdown",
           "report_blocks", "seed_order", "setting", "summary_rows", "summary_sentences", "summary_table",
           "write_report"]
