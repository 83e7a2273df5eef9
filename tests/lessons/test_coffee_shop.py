"""The café model of notebook 01: its rules, its drawings, and run_visits on a real pool."""

from __future__ import annotations

import asyncio

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from support.lessons import coffee_shop as cafe  # noqa: E402
from support.lessons.coffee_shop import GAVE_UP, STANDING, TABLE, WAITED, Customer, line_up, simulate  # noqa: E402

# The small café of the notebook: two tables, one standing place, patience 2.
MORNING = [
    Customer("A", 0, None),
    Customer("B", 0, 3),
    Customer("C", 1, 4),
    Customer("D", 2, 2),
    Customer("E", 2, 1),
    Customer("F", 6, 1),
]


def morning():
    return simulate(MORNING, tables=2, standing=1, patience=2)


def test_tables_first_then_standing_then_the_door():
    day = simulate(line_up(4, every=1), tables=2, standing=1, patience=0.5)
    assert [day.outcomes[n].place for n in "ABCD"] == [TABLE, TABLE, STANDING, GAVE_UP]
    assert day.counts() == {TABLE: 2, STANDING: 1, GAVE_UP: 1, WAITED: 0}


def test_the_sixteenth_customer_of_five_plus_ten_gives_up():
    day = simulate(line_up(16), tables=5, standing=10, patience=2)
    assert day.counts()[TABLE] == 5
    assert day.counts()[STANDING] == 10
    assert day.outcomes["P"].place == GAVE_UP


def test_morning_outcomes():
    day = morning()
    places = {name: outcome.place for name, outcome in day.outcomes.items()}
    assert places == {"A": TABLE, "B": TABLE, "C": STANDING, "D": STANDING, "E": GAVE_UP, "F": TABLE}
    assert day.outcomes["D"].entered == 3 and day.outcomes["D"].waited == 1
    assert day.outcomes["E"].entered is None and day.outcomes["E"].waited is None
    assert day.outcomes["A"].left is None  # never leaves
    assert day.outcomes["B"].left == 3
    assert day.counts() == {TABLE: 3, STANDING: 2, GAVE_UP: 1, WAITED: 1}
    assert day.photo_finishes == []


def test_a_standing_customer_sits_down_when_a_table_frees_up():
    day = morning()
    at_three = day.frame_at(3)
    assert at_three.tables == ("A", "C")  # C took B's table
    assert at_three.standing == ("D",)  # D came in from the door and stands
    assert at_three.door == ("E",)


def test_frames_between_events_show_the_last_state():
    day = morning()
    assert day.frame_at(4.5).gave_up == ("E",)
    assert day.frame_at(4.5).happened == ()
    assert day.frame_at(-1).inside == 0
    assert day.frame_at(100).tables == ("A", None)  # only the customer who never leaves


def test_the_door_line_is_first_come_first_served():
    customers = [Customer("A", 0, 2), Customer("B", 1, 1), Customer("C", 1.5, 1)]
    day = simulate(customers, tables=1, standing=0, patience=5)
    assert day.outcomes["B"].entered == 2
    assert day.outcomes["C"].entered == 3
    assert day.counts()[WAITED] == 2


def test_more_patience_helps_a_burst_but_not_a_leak():
    burst = line_up(18, stays=3)
    assert simulate(burst, tables=5, standing=10, patience=2).counts()[GAVE_UP] == 3
    assert simulate(burst, tables=5, standing=10, patience=4).counts()[GAVE_UP] == 0
    leak = line_up(18, stays=None)
    assert simulate(leak, tables=5, standing=10, patience=1000).counts()[GAVE_UP] == 3


def test_patience_equal_to_the_stay_is_a_photo_finish():
    day = simulate(line_up(18, stays=3), tables=5, standing=10, patience=3)
    assert day.counts()[GAVE_UP] == 0  # leaving happens before giving up (rule 6)
    assert day.photo_finishes == ["P", "Q", "R"]


def test_zero_patience_gives_up_at_once():
    day = simulate(line_up(3), tables=1, standing=1, patience=0)
    assert day.outcomes["C"].place == GAVE_UP
    assert day.frame_at(0).door == ()


def test_same_time_arrivals_keep_list_order():
    day = simulate([Customer("X", 0, 1), Customer("Y", 0, 1)], tables=1, standing=0, patience=0)
    assert day.outcomes["X"].place == TABLE and day.outcomes["Y"].place == GAVE_UP


def test_leaving_happens_before_arriving_at_the_same_moment():
    day = simulate([Customer("A", 0, 1), Customer("B", 1, 1)], tables=1, standing=0, patience=0)
    assert day.outcomes["B"].place == TABLE


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(tables=0, standing=1, patience=1), "tables"),
        (dict(tables=1, standing=-1, patience=1), "standing"),
        (dict(tables=1, standing=1, patience=-1), "patience"),
        (dict(tables=1.5, standing=1, patience=1), "tables"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        simulate(line_up(2), **settings)


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="two customers"):
        simulate([Customer("A", 0, 1), Customer("A", 1, 1)], tables=1, standing=0, patience=1)


def test_names_go_past_z():
    assert cafe.names(28)[-3:] == ["Z", "A2", "B2"]


def test_log_and_table_read_well():
    day = morning()
    log = day.log()
    assert "E gives up" in log and "D comes in" in log
    assert len(log.splitlines()) == len({time for time, _ in day.log_lines})
    table = day.table()
    assert len(table) == 6
    assert table.where(customer="A").rows[0]["stays"] == "never leaves"
    assert "CafeDay" in repr(day)


def test_drawing_a_strip():
    fig = cafe.draw_strip(morning(), times=range(8), columns=4)
    drawn = [ax for ax in fig.axes if ax.get_title()]
    assert len(drawn) == 8
    assert drawn[2].get_title().startswith("t = 2")
    plt.close(fig)
    big = simulate(line_up(20, every=0.1), tables=5, standing=10, patience=2)
    fig = cafe.draw_strip(big, times=[0.4, 1.9, 3.9], columns=3)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 3
    plt.close(fig)


def test_slider_without_a_front_end_does_not_fail(capsys):
    assert cafe.show_slider(morning(), times=[0, 1, 2]) in (True, False)
    plt.close("all")


# --- run_visits against a real pool ------------------------------------------------

_UNIT = 0.3  # seconds per time unit; events below are at least one unit apart


async def _visit(engine, customer, closing_time, outcomes):
    """The notebook's customer, short: count, check out, hold, give back."""
    import sqlalchemy

    pool = engine.sync_engine.pool
    capacity = pool.size() + pool._max_overflow
    inside = pool.checkedout()
    try:
        connection = await engine.connect()
    except sqlalchemy.exc.TimeoutError:
        outcomes[customer.name] = (GAVE_UP, True)
        return
    waited = inside >= capacity
    number = capacity if waited else inside + 1
    outcomes[customer.name] = (TABLE if number <= pool.size() else STANDING, waited)
    if customer.stays is None:
        await closing_time.wait()
    else:
        await asyncio.sleep(customer.stays * _UNIT)
    await connection.close()


@pytest.mark.stack
def test_run_visits_matches_the_model_on_a_real_pool():
    from sqlalchemy.ext.asyncio import create_async_engine

    from support.stack import get_stack

    stack = get_stack()
    customers = [
        Customer("A", 0, None),
        Customer("B", 0, 2),
        Customer("C", 1, 1),
        Customer("D", 4, None),
        Customer("E", 4, 1),
    ]
    model = simulate(customers, tables=1, standing=1, patience=2)
    assert model.counts() == {TABLE: 1, STANDING: 3, GAVE_UP: 1, WAITED: 1}

    async def scenario():
        engine = create_async_engine(stack.database_url, pool_size=1, max_overflow=1, pool_timeout=2 * _UNIT)
        try:
            return await cafe.run_visits(engine, _visit, customers, seconds_per_unit=_UNIT, deadline=10)
        finally:
            await engine.dispose()

    real = asyncio.run(scenario())
    assert model.counts() == real.counts()
    assert real.checked_out_before_closing == 2  # A and D never left
    assert real.checked_out_after == 0
    assert "Checked out connections: 2" in real.status_before_closing
    table = cafe.side_by_side(model, real)
    assert set(table.column("agree")) == {"yes"}
    assert len(cafe.per_customer(model, real)) == 5


def test_run_visits_never_hangs():
    class Pool:
        def status(self):
            return ""

        def checkedout(self):
            return 0

    class Connection:
        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc_info):
            return None

    class Engine:
        sync_engine = type("S", (), {"pool": Pool()})()

        def connect(self):
            return Connection()

    async def never_decides(engine, customer, closing_time, outcomes):
        await asyncio.sleep(60)

    with pytest.raises(TimeoutError):
        asyncio.run(cafe.run_visits(Engine(), never_decides, line_up(2, stays=1), seconds_per_unit=0.01, deadline=0.3))


# The exercise of notebook 01: rush hour.

RUSH = line_up(18, stays=3)


def _real(model):
    """A RealDay that agrees with the model, as a well-behaved real pool does."""
    outcomes = {name: (outcome.place, bool(outcome.waited)) for name, outcome in model.outcomes.items()}
    return cafe.RealDay(outcomes, "", 0, 0, 1.0)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (("5", 10, 4), "EXERCISE_POOL_SIZE is the text '5'"),
        ((5, None, 4), "EXERCISE_MAX_OVERFLOW must be a number"),
        ((5, 10, "4"), "EXERCISE_PATIENCE is the text '4'"),
        ((5, 10, float("nan")), "EXERCISE_PATIENCE must be a number"),
        ((True, 10, 4), "EXERCISE_POOL_SIZE must be a number"),
        ((0, 10, 4), "pool_size=0 means 'no limit'"),
        ((-5, 10, 4), "at least one table"),
        ((5, -1, 4), "max_overflow=-1 means 'no limit'"),
        ((5, -2, 4), "cannot be fewer than 0"),
        ((5, 10, -1), "cannot be negative"),
        ((5, 10, 60), "10 units or less"),
    ],
)
def test_exercise_settings_that_make_no_cafe_are_named(settings, words):
    problem = cafe.settings_problem(*settings)
    assert problem is not None and words in problem, problem


def test_exercise_settings_that_make_a_cafe_pass_the_first_check():
    assert cafe.settings_problem(5, 10, 4) is None
    assert cafe.settings_problem(5, 10, 0) is None  # gives up at once: allowed, the feedback explains


def test_rush_hour_feedback_names_the_actual_mistake():
    def feedback(tables, standing, patience):
        model = simulate(RUSH, tables=tables, standing=standing, patience=patience)
        return cafe.rush_hour_feedback(model, _real(model), seconds_per_unit=0.5)

    assert feedback(5, 10, 2).startswith("not yet: 3 customers still give up")
    assert feedback(5, 13, 2).startswith("not yet: nobody gives up, but the café now has 18 places")
    assert feedback(3, 10, 2).startswith("not yet: the café has 13 places instead of 15")
    assert feedback(5, 10, 3).startswith("almost: the patience ends exactly when")
    assert feedback(5, 10, 4).startswith("well done: with patience 4 units (pool_timeout=2 s)")
    assert cafe.rush_hour_feedback(None, None, seconds_per_unit=0.5).startswith("not yet: fix the settings first")


def test_rush_hour_feedback_notices_when_the_real_pool_disagrees():
    model = simulate(RUSH, tables=5, standing=10, patience=4)
    real = _real(model)
    real.outcomes["R"] = (GAVE_UP, True)
    assert cafe.rush_hour_feedback(model, real, seconds_per_unit=0.5).startswith("almost: the model lets everyone in")
