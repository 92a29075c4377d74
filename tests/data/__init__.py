"""Test data importable both under pytest (tests/ on sys.path) and MicroPython (/tests)."""
