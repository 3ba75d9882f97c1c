"""Micro benchmarks (pytest-benchmark). Under ``-n`` or ``--benchmark-disable`` each runs once, as a test."""
