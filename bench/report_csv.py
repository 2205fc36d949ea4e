"""Report benchmark: `storemon report-csv` end to end, the engine alone, and peak RSS.

    python -m bench.report_csv [--scales 1 2 4] [--repeat 5] [--seed 0] [--out bench/out]

For each scale F it generates (once; kept under OUT/report-scale-F-seed-S) the data set
of `storemon generate --scale F`: 14,000 x F stores, 8 days of about hourly polls. Then,
each time in a fresh process:

- end to end: `python -m storemon.cli report-csv ... -o FILE`, timed from outside, so
  interpreter start, imports, CSV parsing, the computation and writing all count; peak
  RSS is that process's ru_maxrss (os.wait4);
- compute: a child reads the CSVs untimed, then times `engine.compute` on its first call
  (as `report-csv` makes it) and on a warm repeat (as a long-running reporter would).

The input files are read once before every run so that all runs find them in the page
cache: the figures are CPU time, not disk time. Medians and minimums of the runs are
printed, with the machine and the exact command.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STOREMON = [sys.executable, "-m", "storemon.cli"]
INPUT_NAMES = ("store_status.csv", "menu_hours.csv", "timezones.csv")


def dataset(out: Path, scale: float, seed: int) -> Path:
    directory = out / f"report-scale-{scale:g}-seed-{seed}"
    if not all((directory / name).is_file() for name in INPUT_NAMES):
        subprocess.run(
            [*STOREMON, "generate", "--out", str(directory), "--scale", str(scale),
             "--seed", str(seed)],
            check=True,
        )
    return directory


def warm_page_cache(directory: Path) -> None:
    for name in INPUT_NAMES:
        with (directory / name).open("rb") as handle:
            while handle.read(16 << 20):
                pass


def run_measured(command: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, stdout) of a child process."""
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=output, stderr=errors)
        # wait4 rather than Popen.wait: it also gives the child's resource usage.
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        errors.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{errors.read().decode()}")
        return wall, usage.ru_maxrss * 1024, output.read().decode()


def end_to_end(directory: Path) -> tuple[float, int]:
    warm_page_cache(directory)
    wall, peak_rss, _ = run_measured([
        *STOREMON, "report-csv",
        "--status", str(directory / "store_status.csv"),
        "--hours", str(directory / "menu_hours.csv"),
        "--timezones", str(directory / "timezones.csv"),
        "-o", str(directory / "report.csv"),
    ])
    return wall, peak_rss


def compute_only(directory: Path) -> dict[str, float]:
    warm_page_cache(directory)
    command = [sys.executable, "-m", "bench.report_csv", "--child", str(directory)]
    _, _, output = run_measured(command)
    return json.loads(output)


def child(directory: Path) -> None:
    """In a fresh process: read the inputs, then time the computation alone."""
    from storemon.cli import tune_memory_for_batch

    tune_memory_for_batch()  # as report-csv does
    from storemon.inputs.csv_files import read_hours_csv, read_status_csv, read_timezones_csv
    from storemon.uptime import engine

    status = read_status_csv(directory / "store_status.csv").data
    hours = read_hours_csv(directory / "menu_hours.csv").data
    zones = read_timezones_csv(directory / "timezones.csv").data
    started = time.perf_counter()
    report = engine.compute(status, hours, zones)
    first = time.perf_counter() - started
    warm = []
    for _ in range(3):
        started = time.perf_counter()
        engine.compute(status, hours, zones)
        warm.append(time.perf_counter() - started)
    print(json.dumps({"first_s": first, "warm_s": min(warm), "polls": len(status.timestamp_us),
                      "stores": len(report)}))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import pyarrow

    return (f"{os.cpu_count()} cores (nproc), {model}; Python {platform.python_version()}, "
            f"numpy {numpy.__version__}, pyarrow {pyarrow.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return

    print(f"machine: {machine()}")
    print(f"command: python -m bench.report_csv --scales {' '.join(f'{s:g}' for s in args.scales)}"
          f" --repeat {args.repeat} --seed {args.seed}")
    print("| scale | stores | polls | report-csv wall median (min) | peak RSS median "
          "| compute first call median (min) | compute warm median (min) |")
    print("|---|---|---|---|---|---|---|")
    for scale in args.scales:
        directory = dataset(args.out, scale, args.seed)
        walls, rss, firsts, warms = [], [], [], []
        facts: dict[str, float] = {}
        for _ in range(args.repeat):
            wall, peak = end_to_end(directory)
            walls.append(wall)
            rss.append(peak)
            facts = compute_only(directory)
            firsts.append(facts["first_s"])
            warms.append(facts["warm_s"])
        print(
            f"| {scale:g}x | {facts['stores']:,.0f} | {facts['polls']:,.0f} "
            f"| {statistics.median(walls):.2f} s ({min(walls):.2f}) "
            f"| {statistics.median(rss) / 2**20:.0f} MiB "
            f"| {statistics.median(firsts):.2f} s ({min(firsts):.2f}) "
            f"| {statistics.median(warms):.2f} s ({min(warms):.2f}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
