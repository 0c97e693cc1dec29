"""Runs many `ticketlab` command lines in one process (tests/test_torture_files.py): reads a JSON list of jobs
{"argv": [...]} on stdin, prints a JSON list of {"status", "stderr"}. An exception escaping `main` is recorded with
its traceback, as the real command would print it."""

import contextlib
import io
import json
import os
import sys
import traceback

os.environ.setdefault("CI", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def run(argv: list[str]) -> dict:
    from ticketlab.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as e:
            status = e.code
        except BaseException:  # noqa: BLE001 - recorded for the test to show
            traceback.print_exc()
            status = 1
    return {"status": status, "stderr": err.getvalue()}


if __name__ == "__main__":
    print(json.dumps([run(job["argv"]) for job in json.load(sys.stdin)]))
