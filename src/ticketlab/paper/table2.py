"""Table 2 of the source talk (test accuracy before / after pruning), the paper's figures beside ours.

`PAPER` maps each preset of a Table 2 row to the row's figures as the talk quotes them (the project references,
seed_tables.md). `table2(runs_dir)` finds the run directories made from those presets and aggregates their seeds the
way `ticketlab report` does: "dense" is level 0, "ticket" the IMP level >= 1 with the best mean test accuracy at
early stop (minimum validation loss). A run whose settings differ from its preset (a smoke run, another lr) is
shown with the differences, never silently as the published setup.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ticketlab.core.files import read_json
from ticketlab.core.masks import describe_density
from ticketlab.errors import TicketlabError
from ticketlab.report import Group, Row, Run, align, fmt_acc, group_runs, load_run, setting
from ticketlab.report.paired import Paired, paired_difference
from ticketlab.report.published import PAPER, changed_settings

# -- finding our runs ---------------------------------------------------------------------------------------------

def config_files(runs_dir: Path) -> list[Path]:
    """config.json of every run directory one or two levels below `runs_dir` (none if it does not exist)."""
    if not runs_dir.is_dir():
        return []
    return sorted({*runs_dir.glob("*/config.json"), *runs_dir.glob("*/*/config.json")})


def runs_by_preset(runs_dir: str | Path) -> dict[str, list[Run]]:
    """{preset: its runs} for the presets of `PAPER`; other directories (other presets, other tools) are skipped
    unread, so a foreign config.json never stops the table."""
    found: dict[str, list[Run]] = {}
    for path in config_files(Path(runs_dir)):
        try:
            preset = read_json(path).get("preset")
        except (TicketlabError, AttributeError):
            continue
        if preset in PAPER and not any(run.path in path.parents for run in found.get(preset, [])):
            found.setdefault(preset, []).append(load_run(path.parent))
    return found


# -- the table ------------------------------------------------------------------------------------------------------

@dataclass
class Ours:
    """One group of our runs of a preset (runs that differ only in their seeds)."""

    group: Group
    changed: dict[str, object]

    @property
    def dense(self) -> Row | None:
        return self.group.row("imp", 0) if 0 in self.group.levels("imp") else None

    @property
    def ticket(self) -> Row | None:
        return self.group.best_ticket()

    @property
    def gain(self) -> Paired | None:
        """The best ticket minus the dense network, seed by seed (test accuracy at early stop)."""
        ticket = self.ticket
        return None if ticket is None else paired_difference(self.group.runs, ("imp", ticket.level), ("imp", 0))

    def to_dict(self) -> dict:
        def acc(row):
            if row is None or row.acc is None:
                return None
            return {"mean": 100 * row.acc.mean, "std": 100 * row.acc.std, "seeds": row.acc.n}

        ticket = self.ticket
        return {
            "runs": [run.name for run in self.group.runs], "in_progress": self.group.in_progress,
            "published_setup": not self.changed, "changed": self.changed,
            "dense": acc(self.dense), "ticket": acc(ticket),
            "ticket_level": None if ticket is None else ticket.level,
            "ticket_density": None if ticket is None or ticket.density is None else ticket.density.mean,
            "gain": None if self.gain is None else {"mean": 100 * self.gain.mean, "low": 100 * self.gain.low,
                                                    "high": 100 * self.gain.high, "seeds": self.gain.n,
                                                    "verdict": self.gain.verdict},
        }


def table2(runs_dir: str | Path = "runs") -> list[dict]:
    """One entry per preset of `PAPER`: the paper's figures, the command that produces ours, and our groups."""
    from ticketlab.engine.presets import PRESETS

    found = runs_by_preset(runs_dir)
    out = []
    for preset, paper in PAPER.items():
        groups = group_runs(found[preset]) if preset in found else []
        ours = [Ours(g, changed_settings(g.config, preset)) for g in groups]
        ours.sort(key=lambda o: (bool(o.changed), -len(o.group.runs)))  # the published setup first
        where = "" if Path(runs_dir) == Path("runs") else f" --runs-dir {runs_dir}"
        out.append({"preset": preset, "registered": preset in PRESETS, "paper": asdict(paper),
                    "command": paper.command(preset) + where, "ours": ours})
    return out


def to_json(rows: list[dict]) -> str:
    return json.dumps([{**row, "ours": [o.to_dict() for o in row["ours"]]} for row in rows], indent=2)


def ticket_cell(row: Row | None) -> str:
    if row is None or row.acc is None:
        return "—"
    return f"{fmt_acc(row.acc)} at level {row.level}, {describe_density(row.density.mean)}"


def format_table2(rows: list[dict], runs_dir: str | Path = "runs") -> str:
    header = ["network", "dataset", "preset", "paper before", "paper after", "ours dense", "ours ticket",
              "ticket - dense, paired", "runs"]
    table, notes, remarks = [header], [], []
    for row in rows:
        paper, preset = row["paper"], row["preset"]
        mark = ""
        if paper["note"]:
            notes.append(paper["note"])
            mark = f" [{len(notes)}]"
        left = [paper["network"] + mark, paper["dataset"], preset, f"{paper['before']:.2f}", f"{paper['after']:.2f}"]
        if not row["ours"]:
            missing = "" if row["registered"] else " (preset not registered yet)"
            table.append([*left, "—", "—", "—", f"none; to produce: {row['command']}{missing}"])
        for i, ours in enumerate(row["ours"]):
            group = ours.group
            dense = fmt_acc(ours.dense.acc) if ours.dense is not None else "—"
            n = len(group.runs)
            runs = f"{n} seed{'s' if n > 1 else ''}{' (in progress)' if group.in_progress else ''}"
            runs += " (changed settings, see below)" if ours.changed else ""
            gain = "—" if ours.gain is None else f"{ours.gain.format()}: {ours.gain.verdict}"
            table.append([*(left if i == 0 else [""] * len(left)), dense, ticket_cell(ours.ticket), gain, runs])
            if ours.changed:
                changes = ", ".join(setting(k, v) for k, v in ours.changed.items())
                remarks.append(f"{preset} ({', '.join(r.name for r in group.runs)}): changed from the preset: "
                               f"{changes} — not the published setup")
    lines = [
        "Table 2 of the source talk: test accuracy (%) before / after pruning. Paper: as quoted by the talk.",
        f"Ours: runs under {runs_dir}/ made from the preset, mean ± std over seeds; dense = level 0, ticket = the best "
        "IMP level (chosen on validation accuracy); test accuracy at early stop (minimum validation loss); paired: "
        "the ticket minus the dense network of the same seed, mean and 95% t-interval over seeds.",
        "",
        align(table, right={3, 4}),
    ]
    if remarks:
        lines += ["", *remarks]
    sources = dict.fromkeys(f"{r['paper']['network']} / {r['paper']['dataset']}: {r['paper']['source']}" for r in rows)
    lines += ["", "Sources (as cited by the talk): " + "; ".join(sources) + "."]
    lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(lines)
