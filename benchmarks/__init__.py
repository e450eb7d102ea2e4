"""Benchmarks of flux-monitor against the local Flux sandbox; run them with `python benchmarks/run.py`."""
