"""Benchmarks with their own runner (``python -m bench.run``); never timed asserts in tests."""
