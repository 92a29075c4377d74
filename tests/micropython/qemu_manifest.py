# The test firmware of the qemu port (MPS2_AN385, Cortex-M3): edgecore frozen through the
# project's own manifest, plus the portable core's plain tests and mp_runner (the board
# has no filesystem, so the tests are frozen too). Tests keep their asserts: opt=0.
# Built by firmware/micropython/build.sh qemu; run by tests/micropython/run_real.py qemu.
include("../../firmware/micropython/manifest.py")  # noqa: F821 (a manifest built-in)

QEMU_TESTS = ("test_sigv4.py", "test_wire.py", "test_sha1.py", "test_checksum.py")
for _name in QEMU_TESTS:
    module(_name, base_path="..", opt=0)  # noqa: F821
package("data", base_path="..", opt=0)  # noqa: F821
module("mp_runner.py", opt=0)  # noqa: F821
