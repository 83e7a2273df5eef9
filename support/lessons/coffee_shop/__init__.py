"""Notebook 01's café: the model, its drawing, the same customers on a real pool, and the exercise's check."""

from .drawing import draw_frame, draw_strip, show_slider
from .exercise import rush_hour_feedback, settings_problem
from .model import GAVE_UP, OUTCOMES, STANDING, TABLE, WAITED, CafeDay, Customer, line_up, names, simulate
from .real_pool import RealDay, per_customer, run_visits, side_by_side

__all__ = [
    "GAVE_UP",
    "OUTCOMES",
    "STANDING",
    "TABLE",
    "WAITED",
    "CafeDay",
    "Customer",
    "RealDay",
    "draw_frame",
    "draw_strip",
    "line_up",
    "names",
    "per_customer",
    "rush_hour_feedback",
    "run_visits",
    "settings_problem",
    "show_slider",
    "side_by_side",
    "simulate",
]
