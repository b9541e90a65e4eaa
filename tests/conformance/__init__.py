"""Conformance corpus: flows, cases and the tests that run them on every runtime."""
