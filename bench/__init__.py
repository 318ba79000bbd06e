"""Benchmarks and the data generator they share; never part of the test run."""
