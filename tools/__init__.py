"""Maintainer tools for the course's files (not used by the notebooks)."""
