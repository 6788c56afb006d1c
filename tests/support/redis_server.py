"""Placeholder: the real Redis fixture is written by the tools/state work."""
