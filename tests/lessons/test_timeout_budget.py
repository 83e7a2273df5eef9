"""The timeout budget checker: each rule, its messages, and clear errors for bad input."""

from __future__ import annotations

import math

import pytest

from support.lessons.timeout_budget import ADVICE, CONTRADICTION, BudgetCheck, check_budget

GOOD = dict(load_balancer=60, request=30, statement_timeout=10, pool_timeout=2)


def check(**overrides) -> BudgetCheck:
    return check_budget(**{**GOOD, **overrides})


def settings_of(result: BudgetCheck) -> list[tuple[str, tuple[str, ...]]]:
    return [(f.severity, f.settings) for f in result.findings]


def test_a_budget_that_nests_is_clean():
    result = check(connect_timeout=5, command_timeout=12, query_wait_timeout=5, query_timeout=11)
    assert result.clean and result.ok
    assert result.findings == ()
    assert str(result).splitlines()[-1].startswith("✓ no contradictions")
    assert result.chain().startswith("load balancer 60 s > request 30 s > statement_timeout 10 s;")
    assert "query_wait_timeout 5 s" in result.chain()


def test_request_not_shorter_than_load_balancer():
    result = check(request=60)
    assert settings_of(result) == [(CONTRADICTION, ("request", "load_balancer"))]
    assert not result.ok
    assert "load balancer answers 504 first" in result.findings[0].message
    assert "load balancer 60 s <= request 60 s" in result.chain()


def test_no_request_timeout_falls_back_to_the_load_balancer():
    result = check(request=None, statement_timeout=70)
    assert settings_of(result) == [
        (CONTRADICTION, ("request",)),
        (CONTRADICTION, ("statement_timeout", "load balancer")),
    ]
    assert "the load balancer's 60 s" in result.findings[1].message


@pytest.mark.parametrize("statement", [30, 45])
def test_statement_not_shorter_than_request(statement):
    result = check(statement_timeout=statement)
    assert (CONTRADICTION, ("statement_timeout", "request")) in settings_of(result)
    assert f"statement_timeout {statement} s is not shorter than the request's 30 s" in str(result)


def test_statement_timeout_not_set():
    result = check(statement_timeout=None)
    assert settings_of(result) == [(CONTRADICTION, ("statement_timeout",))]
    assert "runaway query" in result.findings[0].message


def test_waiting_plus_statement_must_fit_in_the_request():
    result = check(pool_timeout=5, statement_timeout=28)
    assert settings_of(result) == [(CONTRADICTION, ("pool_timeout", "statement_timeout", "request"))]
    assert "33 s in all, more than the request's 30 s" in result.findings[0].message


def test_pgbouncer_wait_counts_in_the_worst_path():
    result = check(pool_timeout=2, query_wait_timeout=20, statement_timeout=10)
    assert (CONTRADICTION, ("pool_timeout", "statement_timeout", "request")) in settings_of(result)
    assert "pool_timeout 2 s + query_wait_timeout 20 s" in str(result)


def test_pool_timeout_not_shorter_than_request():
    result = check(pool_timeout=30)
    assert settings_of(result) == [(CONTRADICTION, ("pool_timeout", "request"))]


def test_pool_timeout_none_waits_forever():
    result = check(pool_timeout=None)
    assert settings_of(result) == [(CONTRADICTION, ("pool_timeout",))]
    assert "forever" in result.findings[0].message


def test_long_pool_wait_is_advice_not_contradiction():
    result = check(pool_timeout=10)  # 10 + 10 <= 30, but more than a quarter of 30
    assert settings_of(result) == [(ADVICE, ("pool_timeout",))]
    assert result.ok and not result.clean
    assert "at most 7.5 s here" in result.findings[0].message
    assert str(result.findings[0]).startswith("! ")


def test_a_quarter_of_the_request_is_still_short():
    assert check(pool_timeout=7.5).clean


def test_connect_timeout_default_is_too_long_for_a_30_s_request():
    result = check(connect_timeout=60)
    assert settings_of(result) == [(CONTRADICTION, ("connect_timeout", "request"))]
    assert "asyncpg's default is 60 s" in str(result)


def test_command_timeout_below_statement_timeout_is_advice():
    result = check(command_timeout=5)
    assert settings_of(result) == [(ADVICE, ("command_timeout", "statement_timeout"))]
    assert "bare TimeoutError" in str(result)


def test_command_timeout_not_shorter_than_request():
    result = check(command_timeout=30)
    assert settings_of(result) == [(CONTRADICTION, ("command_timeout", "request"))]


def test_query_wait_timeout_default_is_too_long():
    result = check(query_wait_timeout=120)
    assert (CONTRADICTION, ("query_wait_timeout", "request")) in settings_of(result)
    assert "its default is 120 s" in str(result)


def test_pgbouncer_query_timeout_must_be_above_statement_timeout():
    result = check(query_timeout=10)
    assert settings_of(result) == [(CONTRADICTION, ("query_timeout", "statement_timeout"))]
    assert "keeps running on the server" in str(result)


def test_the_usual_defaults_contradict_in_several_places():
    result = check_budget(
        load_balancer=60,
        request=None,
        statement_timeout=None,
        pool_timeout=30,
        connect_timeout=60,
        query_wait_timeout=120,
    )
    assert [f.settings[0] for f in result.contradictions] == [
        "request",
        "statement_timeout",
        "connect_timeout",
        "query_wait_timeout",
    ]
    assert result.advice == []


def test_integers_and_floats_are_seconds():
    result = check(request=29.5, statement_timeout=0.25)
    assert result.timeouts["request"] == 29.5 and result.timeouts["statement_timeout"] == 0.25
    assert "statement_timeout 0.25 s" in result.chain()


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"statement_timeout": "500ms"}, "not the text '500ms' (write 0.5"),
        ({"request": "30"}, "not the text '30'"),
        ({"pool_timeout": True}, "pool_timeout must be a number of seconds or None, got True"),
        ({"request": [30]}, "request must be a number of seconds or None"),
        ({"statement_timeout": 0}, "0 means 'no limit'"),
        ({"pool_timeout": -1}, "pool_timeout must be more than 0 seconds, got -1"),
        ({"request": math.nan}, "finite number"),
        ({"statement_timeout": math.inf}, "for 'no limit' write None"),
        ({"load_balancer": None}, "the outermost limit"),
        ({"query_timeout": 0}, "query_timeout must be more than 0"),
    ],
)
def test_bad_input_says_what_to_write(overrides, words):
    with pytest.raises(ValueError) as raised:
        check(**overrides)
    assert words in str(raised.value)


def test_unknown_or_missing_settings_are_type_errors():
    with pytest.raises(TypeError):
        check(statement=5)
    with pytest.raises(TypeError):
        check_budget(load_balancer=60, request=30, statement_timeout=10)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        check_budget(60, 30, 10, 2)  # type: ignore[misc]
