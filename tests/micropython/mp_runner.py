"""A tiny test runner for MicroPython: imports test modules, calls their test_* functions.

The same files run under pytest on CPython; here each test is a plain function with bare
asserts. main() returns the count of failures (run_real.py reads the closing line).
"""

import gc
import sys


def main(module_names):
    passed = 0
    failed = 0
    for modname in module_names:
        try:
            module = __import__(modname)
        except Exception as exc:  # an import error fails the whole file
            failed += 1
            print("FAILED %s (import)" % modname)
            sys.print_exception(exc)
            continue
        names = sorted(n for n in dir(module) if n.startswith("test_"))
        before = passed
        for name in names:
            func = getattr(module, name)
            if not callable(func):
                continue
            gc.collect()
            try:
                func()
            except Exception as exc:
                failed += 1
                print("FAILED %s::%s" % (modname, name))
                sys.print_exception(exc)
            else:
                passed += 1
        print("%s: %d passed" % (modname, passed - before))
    version = sys.version.split(";")[-1].strip()
    print("micropython %s: %d passed, %d failed" % (version, passed, failed))
    return failed
