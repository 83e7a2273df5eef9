"""The benchmark's sums of nbval's JUnit report: the numbers the README's timing table comes from."""

from __future__ import annotations

import math

from benchmarks.__main__ import seconds_per_notebook

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
  <testcase classname="notebooks.00_setup_check.ipynb" name="Cell 0" time="2.5"/>
  <testcase classname="notebooks.00_setup_check.ipynb" name="Cell 1" time="0.25"/>
  <testcase classname="notebooks.01_coffee_shop.ipynb" name="Cell 0" time="1.0">
    <failure message="AssertionError">boom</failure>
  </testcase>
  <testcase classname="notebooks.01_coffee_shop.ipynb" name="Cell 1" time="3.0"/>
</testsuite></testsuites>
"""


def test_cells_are_summed_per_notebook() -> None:
    times = seconds_per_notebook(REPORT, ["00_setup_check", "01_coffee_shop", "02_default_limits"])
    assert times["00_setup_check"] == 2.75


def test_a_failed_cell_makes_its_notebook_nan_for_good() -> None:
    times = seconds_per_notebook(REPORT, ["01_coffee_shop"])
    assert math.isnan(times["01_coffee_shop"]), "a later passing cell must not hide the failure"


def test_a_notebook_that_never_ran_is_nan_not_zero() -> None:
    times = seconds_per_notebook(REPORT, ["02_default_limits"])
    assert math.isnan(times["02_default_limits"])
