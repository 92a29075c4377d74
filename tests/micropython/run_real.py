"""Runs the plain test files on the real MicroPython builds of
``firmware/micropython/build.sh`` (CPython drives them):

    python tests/micropython/run_real.py unix [--heap SIZE] FILE...
    python tests/micropython/run_real.py qemu MODULE...

``unix``: the 32-bit unix binary (``.cache/micropython/bin/micropython32``), one process
per file, edgecore and edgecore_ports imported from the FROZEN firmware (checked: the
run fails if they would come from the source tree), the test files and tests/data from
the checkout. ``qemu``: the MPS2_AN385 (Cortex-M3) firmware under qemu-system-arm, one
boot per module, its 64 KiB heap; the tests are frozen into that firmware
(tests/micropython/qemu_manifest.py), driven through the raw REPL with the source tree's
own ``tools/pyboard.py``.

Prints one line per file (passed, failed, seconds), every failure in full, and a closing
"N passed, N failed"; exits 1 on any failure.
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CACHE = os.environ.get("EDGECORE_MP_CACHE", os.path.join(ROOT, ".cache", "micropython"))
UNIX_BINARY = os.path.join(CACHE, "bin", "micropython32")
QEMU_FIRMWARE = os.path.join(CACHE, "bin", "qemu-mps2-an385.elf")
SOURCE = os.path.join(CACHE, "src", "micropython-1.27.0")
# The UART on stdio without qemu's multiplexer: its Ctrl-A escape would eat the raw
# REPL's Ctrl-A.
QEMU = ("qemu-system-arm -machine mps2-an385 -display none -monitor null -semihosting "
        "-serial stdio -kernel ")
FILE_TIMEOUT = 600

# Runs one module with mp_runner after checking where edgecore comes from: a frozen
# module's __file__ is the relative name it was frozen under; one imported from a path
# entry (all absolute here, and the working directory is an empty one) is absolute.
RUN = """
import edgecore, edgecore_ports
for _m in (edgecore, edgecore_ports):
    if _m.__file__.startswith("/"):
        raise SystemExit("not frozen: %s from %s" % (_m.__name__, _m.__file__))
import mp_runner
_failed = mp_runner.main([{name!r}])
"""


def _counts(output):
    """(passed, failed) from mp_runner's closing line, or None when it never printed."""
    for line in reversed(output.splitlines()):
        if line.startswith("micropython ") and " passed, " in line:
            words = line.replace(",", "").split()
            return int(words[-4]), int(words[-2])
    return None


def run_unix(files, heap):
    env = dict(os.environ)
    env["MICROPYPATH"] = ".frozen:%s:%s" % (os.path.join(ROOT, "tests"), HERE)
    cmd = [UNIX_BINARY]
    if heap:
        cmd += ["-X", "heapsize=" + heap]
    import tempfile

    cwd = tempfile.mkdtemp(prefix="mp-unix-")
    results = []
    for path in files:
        name = os.path.splitext(os.path.basename(path))[0]
        code = RUN.format(name=name) + "raise SystemExit(1 if _failed else 0)\n"
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd + ["-c", code], cwd=cwd, env=env, capture_output=True,
                                  text=True, errors="replace", timeout=FILE_TIMEOUT)
            output, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            output, rc = "%s\ntimed out after %d s" % (exc.stdout or "", FILE_TIMEOUT), -1
        results.append((name, output, rc, time.monotonic() - t0))
    return results


def run_qemu(modules):
    sys.path.insert(0, os.path.join(SOURCE, "tools"))
    import pyboard

    results = []
    for name in modules:
        t0 = time.monotonic()
        board = pyboard.Pyboard("exec:" + QEMU + QEMU_FIRMWARE)
        try:
            board.enter_raw_repl(soft_reset=False)
            out, err = board.exec_raw(RUN.format(name=name) + "print('exit', _failed)\n",
                                      timeout=FILE_TIMEOUT)
            output = (out + err).decode("utf-8", "replace")
            rc = 0 if not err and "\nexit 0" in "\n" + output else 1
        except pyboard.PyboardError as exc:
            output, rc = "pyboard: %s" % (exc,), -1
        finally:
            board.close()
        results.append((name, output, rc, time.monotonic() - t0))
    return results


def report(results):
    total_passed = total_failed = 0
    for name, output, rc, seconds in results:
        counts = _counts(output)
        passed, failed = counts if counts else (0, 1)
        if rc != 0 and not failed:
            failed = 1  # crashed or exited non-zero after its tests
        total_passed += passed
        total_failed += failed
        print("%-28s %3d passed, %d failed  (%.1f s)" % (name, passed, failed, seconds))
        if failed:
            print("---- %s: full output (exit %s) ----\n%s\n----" % (name, rc, output.rstrip()))
    print("%d passed, %d failed" % (total_passed, total_failed))
    return 1 if total_failed else 0


def main(argv):
    if len(argv) < 2 or argv[0] not in ("unix", "qemu"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if argv[0] == "unix":
        heap = None
        args = argv[1:]
        if args[0] == "--heap":
            heap, args = args[1], args[2:]
        return report(run_unix(args, heap))
    return report(run_qemu(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
