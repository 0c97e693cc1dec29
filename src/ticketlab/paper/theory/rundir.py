"""A theory run directory: CSV tables, JSON summaries and PNG figures, all written atomically.

  results.json   experiment, claim, settings, seed, fits with 95% CIs, excluded (non-finite) trials, files
  *.csv          one row per trial (or per grid cell) with every measured number
  *.png          figures
"""

import csv
import io
from pathlib import Path

from ticketlab.core.files import write_bytes_atomic, write_json_atomic
from ticketlab.paper.theory.plots import to_png


class RunDir:
    def __init__(self, path):
        self.path = Path(path)  # created on the first write, so a refused run leaves nothing behind
        self.files: list[str] = []

    def _add(self, name: str) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        if name not in self.files:
            self.files.append(name)
        return self.path / name

    def csv(self, name: str, rows: list[dict]) -> Path:
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        path = self._add(name)
        write_bytes_atomic(path, buf.getvalue().encode())
        return path

    def json(self, name: str, obj) -> Path:
        path = self._add(name)
        write_json_atomic(path, obj)
        return path

    def png(self, name: str, figure) -> Path:
        path = self._add(name)
        write_bytes_atomic(path, to_png(figure))
        return path


def _cell(value):
    if isinstance(value, float):
        return "" if value != value else f"{value:.6g}"
    return value
