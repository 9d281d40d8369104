"""Attacks on a running orderbus, kept as tests so that the holes stay closed."""
