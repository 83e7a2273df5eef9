"""Every notebook attached to a compatible stack that uses other names.

The stack is started by hand (tests/other_stack.py), not by get_stack():
superuser role ``app``, database ``app``, and a PgBouncer admin console
user ``bouncer_admin`` that is not the app role, in transaction pooling.
The README promises that such a stack works; a notebook that assumes the
course's own names ("course") fails here.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.attached_notebooks import NOTEBOOK_IDS, NOTEBOOK_TIMEOUT, NOTEBOOKS, run_attached
from tests.other_stack import ADMIN_USER, DATABASE, ROLE, other_stack, running_servers_under

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer


@pytest.fixture(scope="module")
def app_stack():
    with other_stack() as stack:
        yield stack
    assert not stack.directory.exists()
    assert not running_servers_under(stack.directory), "a server of the hand-made stack outlived it"


def test_the_stack_has_the_names_it_claims(app_stack):
    """The premise: other names than the course's, and an admin user that is not the app role."""
    exports = app_stack.exports
    with psycopg.connect(exports["COURSE_DATABASE_URL"], autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_user, current_database(), current_setting('is_superuser')").fetchone()
    assert row == (ROLE, DATABASE, "on")
    with psycopg.connect(exports["COURSE_PGBOUNCER_URL"], autocommit=True, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (DATABASE,)
    with psycopg.connect(exports["COURSE_PGBOUNCER_ADMIN_URL"], autocommit=True, connect_timeout=5) as conn:
        modes = {r[0]: r[1] for r in conn.execute("SHOW CONFIG").fetchall()}
    assert modes["pool_mode"] == "transaction"
    assert modes["admin_users"] == ADMIN_USER != ROLE


@pytest.mark.timeout(NOTEBOOK_TIMEOUT + 30)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_notebook_passes_attached_to_other_names(notebook: Path, app_stack, own_work_dir):
    run_attached(notebook, app_stack.exports, own_work_dir)
