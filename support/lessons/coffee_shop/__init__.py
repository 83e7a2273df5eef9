"""Notebook 01's café: the model, its drawing, and the same customers on a real pool."""

from .drawing import draw_frame, draw_strip, show_slider
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
    "run_visits",
    "show_slider",
    "side_by_side",
    "simulate",
]
