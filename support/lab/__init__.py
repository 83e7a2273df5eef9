"""Instruments any notebook may use: serve an app, send load, watch the pool and the server, show results."""
