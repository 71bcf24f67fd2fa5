"""segur-bench's pytest plugin (docs/pytest-plugin.md): the `segur_bench` fixture and the `rem` marker."""

from .bench import BenchError, SegurBench

__all__ = ["BenchError", "SegurBench"]
