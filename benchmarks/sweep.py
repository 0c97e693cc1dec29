"""Sweep throughput: a 4-run sweep (2 learning rates x 2 seeds of mlp-digits, 2 levels, random-pruning baseline) run
as 4 sequential `ticketlab run` commands, then as `ticketlab sweep` on the local executor with 2 workers (packed: the
two seeds of a learning rate train as one batched job; and --no-pack: one process per run), then on a Ray cluster of
2 CPUs started here on 127.0.0.1 (head node in a subprocess, stopped at the end; skipped without Ray).

Every variant is the real command in a fresh directory, wall clock from launch to exit, so Python start-up, data
loading and (for Ray) connecting to the cluster are included; the cluster's own start-up is printed apart. Every
process trains on one thread (as sweep workers on 2 cores with 2 workers do), so the variants differ only in how runs
are scheduled and their numbers are bit for bit the same (checked at the end). On a 2-core machine shared with other
work, 2 threads per sequential run are slower still (threads spin against each other), so this is the fair baseline.
The variants take turns within each repeat; with --repeats >= 2 the median, range and noise (coefficient of
variation, ticketlab.bench.noise) of each are printed, and the speedups as medians of the repeats' ratios.
Run: .venv/bin/python benchmarks/sweep.py [--steps 300it] [--repeats 1] [--no-ray] [--smoke]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PRESET = "mlp-digits"


def spec(steps: str, levels: int = 2) -> dict:
    return {"preset": PRESET,
            "set": {"train.steps": steps, "train.eval_every": "50it", "train.checkpoint_every": "100it",
                    "lottery.levels": levels, "lottery.baselines": ["random_pruning"]},
            "grid": {"train.lr": [0.001, 0.002], "seeds": [0, 1]}, "workers": 2}


def cli(*args) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ticketlab.cli", *map(str, args)], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


def sequential(sweep: dict, root: Path) -> float:
    """The same 4 runs, one `ticketlab run` after another (what one would do without sweeps)."""
    fixed = [x for k, v in sweep["set"].items() for x in ("--set", f"{k}={json.dumps(v)}")]
    total = 0.0
    for lr in sweep["grid"]["train.lr"]:
        for seed in sweep["grid"]["seeds"]:
            total += cli("run", PRESET, *fixed, "--set", f"train.lr={lr}", "--seeds", seed, "--runs-dir", root,
                         "--quiet")
    return total


def swept(sweep: dict, root: Path, *extra) -> float:
    root.mkdir(parents=True)
    (root / "sweep.yaml.in").write_text(yaml.safe_dump(sweep))
    return cli("sweep", root / "sweep.yaml.in", "--sweep-dir", root / "sweep", "--quiet", *extra)


def start_ray(temp: str) -> tuple[subprocess.Popen, str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = Path(temp) / "head.log"
    start = time.perf_counter()
    with open(log, "wb") as out:
        head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--node-ip-address",
                                 "127.0.0.1", "--port", str(port), "--num-cpus", "2", "--include-dashboard=false",
                                 "--disable-usage-stats", "--temp-dir", temp, "--block"],
                                stdout=out, stderr=subprocess.STDOUT)
    while b"block forever" not in log.read_bytes():
        if head.poll() is not None:
            raise SystemExit(f"ray start failed: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return head, f"127.0.0.1:{port}", time.perf_counter() - start


def results(runs_dir: Path) -> dict:
    return {p.relative_to(runs_dir).as_posix(): json.loads(p.read_text())["final_test_acc"]
            for p in sorted(runs_dir.rglob("summary.json"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="300it", help="training steps per level (default: the preset's 300it)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating repeats of every variant")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor")
    parser.add_argument("--smoke", action="store_true", help="2 steps, 1 level, no Ray (a check that it runs; about "
                                                             "a minute, most of it starting Python processes)")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.repeats, args.no_ray = "2it", 1, True
    sweep = spec(args.steps, levels=1 if args.smoke else 2)
    try:
        import ray  # noqa: F401

        have_ray = not args.no_ray
    except ImportError:
        have_ray = False
    from ticketlab.bench.noise import load_mark, load_since, paired_ratio, spread

    before = load_mark()
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="sweep-bench", dir="/tmp") as tmp:
        head = None
        try:
            if have_ray:
                head, address, startup = start_ray(tempfile.mkdtemp(prefix="ray", dir=tmp))
            variants = {"sequential (4 x ticketlab run)": lambda d: sequential(sweep, d),
                        "local sweep, 2 workers": lambda d: swept(sweep, d),
                        "local sweep, 2 workers, --no-pack": lambda d: swept(sweep, d, "--no-pack")}
            if have_ray:
                variants["ray sweep, 2 CPUs"] = lambda d: swept(sweep, d, "--executor", "ray", "--ray-address",
                                                                address)
            outputs = {}
            for r in range(args.repeats):
                for i, (name, fn) in enumerate(variants.items()):
                    out = Path(tmp) / f"v{i}-r{r}"
                    times.setdefault(name, []).append(fn(out))
                    outputs[name] = results(out if i == 0 else out / "sweep" / "runs")
        finally:
            if head is not None:
                head.terminate()
                head.wait(60)
    ref = times["sequential (4 x ticketlab run)"]
    levels = sweep["set"]["lottery.levels"] + 1
    print(f"{PRESET}: 4 runs x {levels} levels x (IMP + random pruning), {args.steps} per stage; {os.cpu_count()} "
          f"cores, 1 thread per process; {args.repeats} alternating repeats")
    for name, t in times.items():
        print(f"  {name:36s} {spread(t)}   speedup over sequential {paired_ratio(ref, t)}")
    print(f"  {load_since(before, threads=2)}")  # 2 processes of 1 thread at a time (sequential: 1)
    if have_ray:
        local, on_ray = (min(times[n]) for n in ("local sweep, 2 workers", "ray sweep, 2 CPUs"))
        print(f"  Ray executor overhead against local: {on_ray - local:+.1f} s ({(on_ray / local - 1) * 100:+.0f}%) "
              f"per sweep; starting the 2-CPU cluster took {startup:.1f} s (not included)")
    else:
        print("  Ray executor not measured (--no-ray, or Ray not installed: pip install 'ticketlab[ray]')")
    first = next(iter(outputs.values()))
    differ = [name for name, accs in outputs.items() if sorted(accs.values()) != sorted(first.values())]
    print(f"  final test accuracies of all {len(first)} stages equal across variants: "
          + ("yes" if not differ else f"no, {', '.join(differ)} differ"))


if __name__ == "__main__":
    main()
