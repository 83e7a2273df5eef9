"""Run the whole course under nbval several times in a row while another process keeps a core busy.

A room's laptops are never idle: a browser, a video call, a virus scanner.
The notebooks assert robust facts so that they pass there too; this is the
check of that claim. It is too slow for every CI run (about the course's
nbval time per round), so run it by hand before a release:

    .venv/bin/python -m benchmarks.busy_machine --rounds 10

It prints one line per round (passed or failed, seconds, the failing cells,
whose tracebacks go to stderr)
and exits 1 if any round failed. The busy process is a plain spin loop,
stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIN = "while True: pass"


def one_round(pattern: str) -> tuple[bool, float, list[str]]:
    """nbval over the notebooks matching ``pattern``: passed, seconds, failed cell ids."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *sorted(map(str, ROOT.glob(pattern)))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    failed = re.findall(r"^FAILED (.+?)(?: - |$)", done.stdout, re.M)
    if done.returncode != 0:
        print(done.stdout[-4000:], file=sys.stderr, flush=True)  # the failing cell and its traceback
    return done.returncode == 0, time.perf_counter() - started, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--notebooks", default="notebooks/[0-9][0-9]_*.ipynb", help="a glob under the course folder")
    args = parser.parse_args(argv)
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    failures = 0
    try:
        for n in range(1, args.rounds + 1):
            passed, seconds, failed = one_round(args.notebooks)
            failures += not passed
            print(f"round {n}: {'passed' if passed else 'FAILED'} in {seconds:.0f} s {' '.join(failed)}", flush=True)
    finally:
        spinner.kill()
        spinner.wait()
    print(f"{args.rounds - failures} of {args.rounds} rounds passed with one core kept busy")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
