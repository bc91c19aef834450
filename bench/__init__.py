"""The benchmark harness: `make bench` or `python -m bench` (see bench/__main__.py)."""
