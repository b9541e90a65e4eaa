"""Test harnesses: runtimes that carry out the engine's commands under test control."""
