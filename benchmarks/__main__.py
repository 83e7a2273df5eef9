"""Print how long the course takes to get going and to run, as a table.

* private stack start, cold (no template data directory yet, so initdb runs)
  and warm (template present), median of N each. Cold and warm runs
  alternate, because this kind of disk slows down right after many files
  were deleted and alternating spreads that over both.
* each notebook's time under nbval, and the wall time of one nbval run
  over the whole course.

Timing targets live here, not in the tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

from support.stack import start_private_stack

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "stack start, warm (median)": 1.0,
    "stack start, cold (median)": 3.0,
    "00_setup_check": 15.0,
    **{name: 30.0 for name in ("08_sync_endpoints_and_the_thread_pool", "09_holding_connections_across_slow_work")},
    **{name: 30.0 for name in ("10_timeouts_as_guards", "11_stale_connections", "12_watching_the_pool_in_production")},
    "13_capstone_diagnose_an_app": 45.0,
    "all notebooks": 180.0,
}
_SPARE_WAIT = 20.0


def _fresh_tmpdir() -> str:
    directory = tempfile.mkdtemp(prefix="five-tables-bench-")
    os.chmod(directory, 0o755)
    return directory


def _time_start(tmpdir: str, *, leave_spare: bool = False) -> tuple[float, str | None]:
    """Seconds until a private stack answers, and where its data directory came from.

    With leave_spare the stack stays up until its keeper has made the spare
    data directory, as it would in a kernel that runs for more than a few
    seconds.
    """
    os.environ["TMPDIR"] = tmpdir
    started = time.perf_counter()
    stack = start_private_stack()
    took = time.perf_counter() - started
    deadline = time.monotonic() + _SPARE_WAIT
    while leave_spare and time.monotonic() < deadline and not _spares(tmpdir):
        time.sleep(0.1)
    stack.stop()
    return took, stack.data_dir_from


def _spares(tmpdir: str) -> list[Path]:
    return [p for p in Path(tmpdir).glob("five-tables-*/spare-*") if not p.name.endswith(".building")]


def stack_start_times(runs: int) -> tuple[list[float], list[float]]:
    """Cold: a fresh work directory (initdb runs). Warm: the previous kernel left a spare."""
    warm_dir = _fresh_tmpdir()
    original = os.environ.get("TMPDIR")
    cold, warm = [], []
    try:
        _time_start(warm_dir, leave_spare=True)
        for _ in range(runs):
            cold_dir = _fresh_tmpdir()
            seconds, source = _time_start(cold_dir)
            assert source == "initdb", source
            cold.append(seconds)
            shutil.rmtree(cold_dir)
            seconds, source = _time_start(warm_dir, leave_spare=True)
            assert source == "spare", source
            warm.append(seconds)
    finally:
        shutil.rmtree(warm_dir)
        if original is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = original
    return cold, warm


def seconds_per_notebook(junit_xml: str, stems: list[str]) -> dict[str, float]:
    """Sum pytest's per-cell times by notebook; nan for a notebook with a failed or missing cell."""
    times = dict.fromkeys(stems, 0.0)
    seen = set()
    for case in ElementTree.fromstring(junit_xml).iter("testcase"):
        stem = case.get("classname", "").removeprefix("notebooks.").removesuffix(".ipynb")
        failed = case.find("failure") is not None or case.find("error") is not None
        times[stem] = float("nan") if failed else times.get(stem, 0.0) + float(case.get("time", "nan"))
        seen.add(stem)
    return {stem: (seconds if stem in seen else float("nan")) for stem, seconds in times.items()}


def notebook_times() -> tuple[dict[str, float], float]:
    """Each notebook's seconds and the wall time of one nbval run over the whole course.

    One pytest run, as ``./course test`` does it: pytest's own start-up (about
    4 s, most of it jsonschema's format checkers imported through nbformat) is
    paid once, not per notebook. A notebook's time is the sum of its cells'
    times in pytest's JUnit report, which includes starting and stopping its
    kernel; a failed notebook shows as nan.
    """
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    with tempfile.TemporaryDirectory(prefix="five-tables-bench-") as scratch:
        report = Path(scratch) / "junit.xml"
        started = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", *(str(n) for n in notebooks)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        wall = time.perf_counter() - started
        times = seconds_per_notebook(report.read_text(), [n.stem for n in notebooks])
    if run.returncode != 0:
        print(f"some notebooks FAILED under nbval:\n{run.stdout[-3000:]}", file=sys.stderr)
    return times, wall if run.returncode == 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(prog="./course bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="stack starts of each kind (default 5)")
    args = parser.parse_args()
    cold, warm = stack_start_times(args.runs)
    rows = [
        ("stack start, warm (median)", statistics.median(warm), " ".join(f"{t:.2f}" for t in warm)),
        ("stack start, cold (median)", statistics.median(cold), " ".join(f"{t:.2f}" for t in cold)),
    ]
    notebooks, wall = notebook_times()
    rows += [(name, seconds, "under nbval, kernel start included") for name, seconds in notebooks.items()]
    rows.append(("all notebooks", wall, "one nbval run, wall time, pytest start-up included"))
    print(f"{'what':40} {'seconds':>8}  {'target':>7}  detail")
    for name, seconds, detail in rows:
        target = (
            f"<= {TARGETS[name]:.0f}"
            if name in TARGETS and TARGETS[name] >= 3
            else (f"<= {TARGETS[name]:.1f}" if name in TARGETS else "")
        )
        print(f"{name:40} {seconds:8.2f}  {target:>7}  {detail}")


if __name__ == "__main__":
    main()
