"""docker-compose.yml must describe the stack that support/stack/defaults.py describes.

The compose file cannot import Python, so its numbers are written out by
hand; these tests read it as YAML (no Docker needed) and compare every value
with the defaults, so a change on one side without the other fails here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from support.stack import defaults

COMPOSE_PATH = Path(__file__).resolve().parents[2] / "docker-compose.yml"

POSTGRES = "postgres"
PGBOUNCER = "pgbouncer"

#: PgBouncer image variables that say how to reach the server and who may log
#: in, rather than how the pool behaves.
PGBOUNCER_CONNECTION_VARIABLES = {
    "DB_HOST",
    "DB_PORT",
    "DB_USER",
    "DB_PASSWORD",
    "DB_NAME",
    "LISTEN_PORT",
    "AUTH_TYPE",
    "ADMIN_USERS",
    "STATS_USERS",
}
#: Pool settings the compose file pins on purpose although defaults.py does
#: not list them, each with the value it must have (see the comment beside it
#: in docker-compose.yml).
PGBOUNCER_DELIBERATE_EXTRAS = {"MAX_PREPARED_STATEMENTS": "0"}

_EXPORT_LINE = re.compile(r"^#\s*export\s+([A-Z_][A-Z0-9_]*)=(\S+)\s*$")


# --------------------------------------------------------------------------
# Reading the compose file


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_PATH.read_text()


@pytest.fixture(scope="module")
def compose(compose_text) -> dict:
    data = yaml.safe_load(compose_text)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), (
        "docker-compose.yml has no services mapping"
    )
    return data


def _service(compose: dict, name: str) -> dict:
    assert name in compose["services"], f"docker-compose.yml has no '{name}' service"
    return compose["services"][name]


def _scalar(value) -> str:
    """A value as docker compose passes it to the container."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _environment(service: dict) -> dict[str, str]:
    """The service's environment, from either the mapping or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {key: _scalar(value) for key, value in env.items()}
    pairs = {}
    for item in env:
        key, _, value = str(item).partition("=")
        pairs[key] = value
    return pairs


def _published_ports(service: dict) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) for each published port."""
    ports = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):  # long syntax
            ports.append((_scalar(entry.get("host_ip")), int(entry["published"]), int(entry["target"])))
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            host_ip, published, target = parts
        elif len(parts) == 2:
            host_ip, (published, target) = "", parts
        else:
            host_ip, published, target = "", "", parts[0]
        ports.append((host_ip, int(published) if published else 0, int(target)))
    return ports


def _postgres_flags(service: dict) -> dict[str, str]:
    """The server settings given on the command line (-c name=value, --name=value)."""
    command = service.get("command") or []
    args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    flags: dict[str, str] = {}
    position = 0
    while position < len(args):
        arg = args[position]
        if arg == "-c" and position + 1 < len(args):
            setting = args[position + 1]
            position += 2
        elif arg.startswith("-c") and len(arg) > 2:
            setting = arg[2:]
            position += 1
        elif arg.startswith("--") and "=" in arg:
            setting = arg[2:]
            position += 1
        else:
            position += 1
            continue
        name, _, value = setting.partition("=")
        flags[name.replace("-", "_")] = value
    return flags


def _healthcheck_command(service: dict) -> str:
    check = service.get("healthcheck") or {}
    assert not check.get("disable"), "healthcheck is disabled"
    test = check.get("test")
    assert test, "no healthcheck test"
    if isinstance(test, str):
        return test
    assert test[0] in ("CMD", "CMD-SHELL"), f"healthcheck test must start with CMD or CMD-SHELL: {test}"
    return " ".join(str(part) for part in test[1:])


def _export_lines(compose_text: str) -> list[tuple[str, str]]:
    return [m.groups() for line in compose_text.splitlines() if (m := _EXPORT_LINE.match(line))]


# --------------------------------------------------------------------------
# PostgreSQL


def test_postgres_uses_the_official_postgresql_15_image(compose):
    image = _service(compose, POSTGRES)["image"]
    assert re.fullmatch(r"postgres:15(\.\d+)?(-[a-z0-9.]+)?", image), image


def test_postgres_creates_the_course_role_and_database(compose):
    env = _environment(_service(compose, POSTGRES))
    assert env.get("POSTGRES_USER") == defaults.ROLE
    assert env.get("POSTGRES_DB") == defaults.DATABASE
    assert env.get("POSTGRES_PASSWORD"), "POSTGRES_PASSWORD must be set"


def test_postgres_authenticates_with_scram(compose):
    env = _environment(_service(compose, POSTGRES))
    assert env.get("POSTGRES_HOST_AUTH_METHOD") == "scram-sha-256"
    assert "--auth-host=scram-sha-256" in shlex.split(env.get("POSTGRES_INITDB_ARGS", ""))


@pytest.mark.parametrize("name, value", sorted(defaults.POSTGRES_SETTINGS.items()))
def test_postgres_setting_is_passed_as_c_flag(compose, name, value):
    flags = _postgres_flags(_service(compose, POSTGRES))
    assert name in flags, f"no '-c {name}=...' in the postgres command"
    assert flags[name] == value


def test_postgres_command_sets_nothing_beyond_the_defaults(compose):
    assert _postgres_flags(_service(compose, POSTGRES)) == defaults.POSTGRES_SETTINGS


# --------------------------------------------------------------------------
# PgBouncer


@pytest.mark.parametrize("name, value", sorted(defaults.PGBOUNCER_SETTINGS.items()))
def test_pgbouncer_setting_is_set(compose, name, value):
    env = _environment(_service(compose, PGBOUNCER))
    variable = name.upper()
    assert variable in env, f"pgbouncer service does not set {variable} (for {name})"
    assert env[variable] == value


def test_pgbouncer_sets_no_pool_setting_that_defaults_do_not_know(compose):
    env = _environment(_service(compose, PGBOUNCER))
    known = (
        PGBOUNCER_CONNECTION_VARIABLES
        | set(PGBOUNCER_DELIBERATE_EXTRAS)
        | {name.upper() for name in defaults.PGBOUNCER_SETTINGS}
    )
    assert sorted(set(env) - known) == [], (
        "add these to PGBOUNCER_SETTINGS in support/stack/defaults.py, or justify them here"
    )
    for variable, value in PGBOUNCER_DELIBERATE_EXTRAS.items():
        assert env.get(variable) == value


def test_pgbouncer_logs_in_to_postgres_as_the_course_role(compose):
    postgres_env = _environment(_service(compose, POSTGRES))
    env = _environment(_service(compose, PGBOUNCER))
    assert env.get("DB_USER") == defaults.ROLE == postgres_env.get("POSTGRES_USER")
    assert env.get("DB_PASSWORD") == postgres_env.get("POSTGRES_PASSWORD")
    assert env.get("DB_HOST") == POSTGRES
    container_ports = {target for _, _, target in _published_ports(_service(compose, POSTGRES))}
    assert int(env.get("DB_PORT", "5432")) in container_ports
    # Unset maps every database name to the server (like the private stack);
    # set, it must name the course database.
    assert env.get("DB_NAME", defaults.DATABASE) == defaults.DATABASE


def test_pgbouncer_uses_scram_and_the_role_is_its_admin(compose):
    env = _environment(_service(compose, PGBOUNCER))
    assert env.get("AUTH_TYPE") == "scram-sha-256"
    assert env.get("ADMIN_USERS") == defaults.ROLE


def test_pgbouncer_waits_for_a_healthy_postgres(compose):
    depends_on = _service(compose, PGBOUNCER).get("depends_on")
    assert isinstance(depends_on, dict) and POSTGRES in depends_on, (
        "pgbouncer must depend on postgres (long form, with a condition)"
    )
    assert depends_on[POSTGRES].get("condition") == "service_healthy"


# --------------------------------------------------------------------------
# Ports and health checks


def test_every_published_port_is_bound_to_loopback_only(compose):
    for name, service in compose["services"].items():
        for host_ip, published, target in _published_ports(service):
            assert host_ip == "127.0.0.1", f"{name} publishes {target} on '{host_ip or 'every address'}'"
            assert published, f"{name} publishes {target} on a random host port"


def test_postgres_is_published_on_55432(compose):
    assert _published_ports(_service(compose, POSTGRES)) == [("127.0.0.1", 55432, 5432)]


def test_pgbouncer_is_published_on_56432_where_it_listens(compose):
    env = _environment(_service(compose, PGBOUNCER))
    listen_port = int(env.get("LISTEN_PORT", "5432"))
    assert _published_ports(_service(compose, PGBOUNCER)) == [("127.0.0.1", 56432, listen_port)]
    assert listen_port == 6432


def test_postgres_healthcheck_asks_the_server_over_tcp(compose):
    command = _healthcheck_command(_service(compose, POSTGRES))
    words = shlex.split(command)
    assert "pg_isready" in words
    assert words[words.index("-U") + 1] == defaults.ROLE
    assert words[words.index("-d") + 1] == defaults.DATABASE
    assert words[words.index("-h") + 1] == "127.0.0.1"


def test_pgbouncer_healthcheck_probes_its_listening_port(compose):
    env = _environment(_service(compose, PGBOUNCER))
    command = _healthcheck_command(_service(compose, PGBOUNCER))
    assert env["LISTEN_PORT"] in shlex.split(command.replace("||", " "))


# --------------------------------------------------------------------------
# The export lines a learner copies


def test_export_lines_name_the_attach_variables_in_order(compose_text):
    names = tuple(name for name, _ in _export_lines(compose_text))
    assert names == defaults.ATTACH_VARIABLES


def test_export_lines_come_before_the_first_setting(compose_text):
    lines = compose_text.splitlines()
    first_setting = next(i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#"))
    export_rows = [i for i, line in enumerate(lines) if _EXPORT_LINE.match(line)]
    assert export_rows and max(export_rows) < first_setting


def test_export_lines_point_at_the_published_ports(compose, compose_text):
    exports = dict(_export_lines(compose_text))
    password = _environment(_service(compose, POSTGRES))["POSTGRES_PASSWORD"]
    ((_, postgres_port, _),) = _published_ports(_service(compose, POSTGRES))
    ((_, pgbouncer_port, _),) = _published_ports(_service(compose, PGBOUNCER))
    expected = {
        defaults.ENV_DATABASE_URL: (postgres_port, defaults.DATABASE),
        defaults.ENV_PGBOUNCER_URL: (pgbouncer_port, defaults.DATABASE),
        defaults.ENV_PGBOUNCER_ADMIN_URL: (pgbouncer_port, "pgbouncer"),
    }
    for variable, (port, database) in expected.items():
        url = urlsplit(exports[variable])
        assert url.scheme == "postgresql", exports[variable]
        assert url.username == defaults.ROLE, exports[variable]
        assert url.password == password, exports[variable]
        assert url.hostname == "127.0.0.1", exports[variable]
        assert url.port == port, exports[variable]
        assert url.path == f"/{database}", exports[variable]
