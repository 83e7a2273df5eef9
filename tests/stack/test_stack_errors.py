"""Bad set-ups give a clear message quickly: missing programs, bad COURSE_* values."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from support.stack import (
    StackError,
    as_libpq_url,
    as_sqlalchemy_url,
    attached_stack_from_env,
    check_reachable,
    defaults,
    get_stack,
    hide_password,
    start_private_stack,
)
from support.stack.binaries import ENV_PGBOUNCER, ENV_POSTGRES_BINDIR, MissingBinariesError, find_binaries
from support.stack.course_stack import read_keeper_reply

ERROR_DEADLINE = 10.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_url_forms():
    assert as_sqlalchemy_url("postgresql://u:p@h:1/d") == "postgresql+asyncpg://u:p@h:1/d"
    assert as_sqlalchemy_url("postgres://u:p@h:1/d") == "postgresql+asyncpg://u:p@h:1/d"
    assert as_libpq_url("postgresql+asyncpg://u:p@h:1/d") == "postgresql://u:p@h:1/d"
    assert hide_password("postgresql://u:secret@h:1/d") == "postgresql://u:***@h:1/d"


def test_hide_password_hides_every_form():
    assert hide_password("postgresql://h:1/d?user=u&password=secret&sslmode=disable") == (
        "postgresql://h:1/d?user=u&password=***&sslmode=disable"
    )
    assert hide_password("postgresql://u:p%40ss@h/d?PASSWORD=x") == "postgresql://u:***@h/d?PASSWORD=***"
    assert hide_password("postgresql://u:se:cr@et@h/d") == "postgresql://u:***@h/d"
    assert "secret" not in hide_password("postgresql://u:secret@h:notaport/d")
    assert hide_password("postgresql://u@h/d") == "postgresql://u@h/d"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        as_sqlalchemy_url("mysql://u:p@h/d")


def test_missing_postgres_names_package_commands_and_compose(monkeypatch):
    monkeypatch.setenv(ENV_POSTGRES_BINDIR, "/nonexistent/bin")
    with pytest.raises(MissingBinariesError) as caught:
        find_binaries()
    message = str(caught.value)
    for expected in (
        "PostgreSQL server",
        "/nonexistent/bin",
        "apt-get install -y postgresql pgbouncer",
        "brew install",
        "docker compose up -d",
    ):
        assert expected in message


@pytest.mark.stack
def test_missing_pgbouncer_is_reported_by_start_within_seconds(monkeypatch):
    monkeypatch.setenv(ENV_PGBOUNCER, "/nonexistent/pgbouncer")
    started = time.monotonic()
    with pytest.raises(MissingBinariesError, match="PgBouncer"):
        start_private_stack()
    assert time.monotonic() - started < ERROR_DEADLINE


@pytest.mark.parametrize(
    "garbage, why",
    [
        ("garbage", "does not start with postgresql://"),
        ("postgresql://course:secret@127.0.0.1:notaport/course", "Port could not be cast"),
        ("mysql://course:secret@127.0.0.1:5432/course", "does not start with postgresql://"),
        ("postgresql://course:secret@:5432/course", "names no host"),
        ("postgresql://course:secret@127.0.0.1:5432", "names no database"),
        ("postgresql://course:secret@[::1/course", "Invalid IPv6 URL"),
    ],
)
@pytest.mark.parametrize("variable", defaults.ATTACH_VARIABLES)
def test_garbage_in_a_variable_names_that_variable(variable, garbage, why):
    good = "postgresql://course:x@127.0.0.1:5432/course"
    environ = {name: good for name in defaults.ATTACH_VARIABLES} | {variable: garbage}
    with pytest.raises(StackError) as caught:
        attached_stack_from_env(environ)
    message = str(caught.value)
    assert message.startswith(f"{variable} is not a usable URL"), message
    assert why in message and "secret" not in message


def test_a_keeper_that_dies_without_reporting_passes_on_its_last_words():
    keeper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.stderr.write('Traceback ...\\nImportError: cannot import x\\n'); sys.exit(1)",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with pytest.raises(StackError) as caught:
        read_keeper_reply(keeper)
    assert str(caught.value) == "The stack keeper exited without reporting (exit code 1): ImportError: cannot import x"


@pytest.mark.stack
def test_a_bad_setting_is_one_line_with_the_servers_reason(own_work_dir):
    with pytest.raises(StackError) as caught:
        start_private_stack(postgres={"max_connections": -1})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("The private stack did not start: PostgreSQL exited at start")
    assert '-1 is outside the valid range for parameter "max_connections"' in message
    assert "max_connections" in caught.value.detail


@pytest.mark.stack
def test_a_bad_pgbouncer_setting_is_one_line_with_the_reason(own_work_dir):
    with pytest.raises(StackError) as caught:
        start_private_stack(pgbouncer={"pool_mode": "nonsense"})
    message = str(caught.value)
    assert "\n" not in message and "PgBouncer did not start" in message and "pool_mode" in message, message


@pytest.mark.stack
def test_an_unusable_work_dir_is_one_line_naming_path_and_fix(own_work_dir):
    blocker = os.path.join(own_work_dir, f"five-tables-{os.geteuid()}")
    with open(blocker, "w") as handle:
        handle.write("in the way")
    started = time.monotonic()
    with pytest.raises(StackError) as caught:
        start_private_stack()
    assert time.monotonic() - started < ERROR_DEADLINE
    message = str(caught.value)
    assert "\n" not in message and blocker in message and "is not a directory" in message and "Fix:" in message


def test_no_variables_means_private_mode():
    assert attached_stack_from_env({}) is None


def test_partial_variables_name_the_missing_ones():
    with pytest.raises(StackError) as caught:
        attached_stack_from_env({defaults.ENV_DATABASE_URL: "postgresql://course:x@127.0.0.1:1/course"})
    assert defaults.ENV_PGBOUNCER_URL in str(caught.value)
    assert defaults.ENV_PGBOUNCER_ADMIN_URL in str(caught.value)


@pytest.mark.stack
def test_unreachable_variable_is_named_within_seconds(monkeypatch):
    stack = start_private_stack()
    try:
        port = _closed_port()
        monkeypatch.setenv(defaults.ENV_DATABASE_URL, stack.database_dsn)
        monkeypatch.setenv(defaults.ENV_PGBOUNCER_URL, f"postgresql://course:x@127.0.0.1:{port}/course")
        monkeypatch.setenv(defaults.ENV_PGBOUNCER_ADMIN_URL, stack.admin_dsn)
        started = time.monotonic()
        with pytest.raises(StackError) as caught:
            check_reachable(attached_stack_from_env())
        assert time.monotonic() - started < ERROR_DEADLINE
        assert defaults.ENV_PGBOUNCER_URL in str(caught.value)
        assert "x@" not in str(caught.value)  # the password is not printed
    finally:
        stack.stop()


@pytest.mark.stack
def test_wrong_password_is_named(monkeypatch):
    stack = start_private_stack()
    try:
        monkeypatch.setenv(defaults.ENV_DATABASE_URL, stack.database_dsn)
        monkeypatch.setenv(defaults.ENV_PGBOUNCER_URL, stack.pgbouncer_dsn)
        password = stack.admin_dsn.split(":")[2].split("@")[0]
        monkeypatch.setenv(defaults.ENV_PGBOUNCER_ADMIN_URL, stack.admin_dsn.replace(password, "nope"))
        with pytest.raises(StackError, match=defaults.ENV_PGBOUNCER_ADMIN_URL) as caught:
            check_reachable(attached_stack_from_env())
        message = str(caught.value)
        assert "password was rejected" in message and "Is the stack running" not in message, message
        assert "nope" not in message
    finally:
        stack.stop()


@pytest.mark.stack
def test_get_stack_attaches_without_starting_anything(monkeypatch, tmp_path):
    import support.stack.attach as stack_module

    stack = start_private_stack()
    try:
        monkeypatch.setenv(defaults.ENV_DATABASE_URL, stack.database_dsn)
        monkeypatch.setenv(defaults.ENV_PGBOUNCER_URL, stack.pgbouncer_dsn)
        monkeypatch.setenv(defaults.ENV_PGBOUNCER_ADMIN_URL, stack.admin_dsn)
        monkeypatch.setattr(stack_module, "_shared", None)
        monkeypatch.setattr(
            stack_module, "start_private_stack", lambda **_: pytest.fail("attach mode must not start a stack")
        )
        attached = get_stack()
        assert attached.mode == "attached"
        assert attached.pgbouncer_url == stack.pgbouncer_url
        assert "attached" in attached.describe() and "***" in attached.describe()
    finally:
        stack.stop()
