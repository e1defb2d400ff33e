"""Runnable benchmarks for llmcost: ``python -m benchmarks [--quick] [NAME ...]``.

Each ``bench_*.py`` module has ``main(argv)`` and prints a table; nothing here asserts timings.
"""
