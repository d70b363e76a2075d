"""Benchmarks that print figures (latency percentiles, throughput, memory).

Run with ./polku bench [name]; every benchmark measures a reference in the same run.
"""
