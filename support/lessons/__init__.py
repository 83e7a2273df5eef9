"""Code that belongs to one notebook, in a module named after that notebook's topic."""
