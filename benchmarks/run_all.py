"""Run every benchmark in this folder, one after the other (`make bench`). Each prints its own medians, ranges,
noise figures, the machine load it saw, and a verdict only where the noise allows one.
Run: .venv/bin/python benchmarks/run_all.py [--smoke] [--threads N]
"""

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def scripts() -> list[Path]:
    return [s for s in sorted(HERE.glob("*.py")) if s.name != Path(__file__).name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every benchmark at its smallest size (a check that "
                                                             "each runs, no figures to quote)")
    parser.add_argument("--threads", type=int, metavar="N", help="passed to the benchmarks that take --threads")
    args = parser.parse_args()
    failed = []
    for script in scripts():
        print(f"\n=== {script.name} ===", flush=True)
        extra = ["--smoke"] if args.smoke else []
        if args.threads and "--threads" in script.read_text():
            extra += ["--threads", str(args.threads)]
        if subprocess.run([sys.executable, str(script), *extra]).returncode != 0:
            failed.append(script.name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
