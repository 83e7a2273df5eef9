"""Stops a stack's servers when its keeper dies, where no parent-death signal does.

On Linux the servers carry a parent-death signal (server_process.py): the
kernel signals them the moment their keeper dies, however it dies. macOS
has no such thing, so there the keeper starts this small process next to
its servers, with a pipe on its standard input whose writing end only the
keeper holds. The operating system closes that end when the keeper exits
for any reason, SIGKILL included, so end of file here means "the keeper is
gone". Then the watchdog stops the servers whose command line names the
stack's folder and deletes the folder (cleanup.py, the same code that
``./course clean`` runs). After a normal stop the keeper has done that
already, and the watchdog finds nothing left.

It does not poll: it blocks on the pipe, costs nothing while it waits, and
reacts within milliseconds. It ignores SIGINT and SIGHUP as the keeper
does. If the watchdog itself is killed, the keeper carries on, and the next
stack start or ``./course clean`` removes whatever a later crash leaves.
A last line of defence needs nobody: PostgreSQL checks its postmaster.pid
once a minute and shuts itself down when the file is gone (seen here: 59 s
after it was deleted, "could not open file postmaster.pid" then "database
system is shut down"), so a PostgreSQL whose folder was removed never
lingers for long. PgBouncer has no such check, which is why clean-up looks
for it by its command line.
Kernel death needs no watchdog on any system: the keeper sees end of file on
its own standard input, and checks its parent pid as well (keeper.py).

Linux tests run this path by setting COURSE_STACK_WITHOUT_PDEATHSIG=1.
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from .cleanup import clean_stack


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack-dir", required=True, type=Path)
    parser.add_argument("--server-uid", type=int, action="append", default=[])
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while os.read(0, 65536):  # returns b"" at end of file: the keeper has exited
        pass
    clean_stack(args.stack_dir, set(args.server_uid))


if __name__ == "__main__":
    main()
