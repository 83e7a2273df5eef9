"""Timing benchmarks of the course (not tests): `./course bench`."""
