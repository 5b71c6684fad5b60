"""Helpers shared by the integration, end-to-end tests and benchmarks."""
