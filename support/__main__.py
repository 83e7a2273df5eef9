"""``python -m support up|down|status``: the shared stack's commands (see support/stack/cli.py)."""

import sys

from support.stack.cli import main

sys.exit(main())
