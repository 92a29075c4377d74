"""Fault injection for tests (CPython only): ``proxy.FaultProxy``, an HTTP-aware TCP proxy."""
