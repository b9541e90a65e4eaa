"""Tests of the in-process runtime and its public face, ``rustyflower.testing``."""
