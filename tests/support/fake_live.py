"""Placeholder: the fake Live server fixture is written by the fake-live work."""
