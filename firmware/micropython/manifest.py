# Freezes edgecore into a MicroPython firmware image (bytecode in flash, not in RAM).
#
#   cd micropython/ports/esp32   # or ports/rp2 (BOARD=RPI_PICO_W)
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/edgecore/firmware/micropython/manifest.py
#
# Frozen: the portable core (package edgecore, every module) and, as the package
# edgecore_ports, only what a board needs: the port interface (ports/__init__.py), the
# MicroPython port (ports/micropython.py), the agent's executor (runner, agentconfig,
# store, download) with its board entry point (mp_agent), the AWS IoT credentials
# provider (ports/mp_iot.py) and the application-serving modules. The CPython-only ports
# (cpython, linux, raspberrypi, jetson, credentials, signing) are left out.
# FROZEN_MANIFEST replaces the port's own manifest, so that one is included first to
# keep its modules (networking, ntptime, mip, ssl, asyncio): the board's (RPI_PICO_W),
# else the port's (esp32: boards/manifest.py; unix: variants/manifest.py). A port with
# none (qemu) freezes edgecore alone.
import os
import shutil


def _include_first(*paths):
    for path in paths:
        try:
            include(path)  # noqa: F821 (a manifest built-in)
            return
        except Exception as exc:  # makemanifest wraps every error in ManifestFileError
            text = str(exc)
            # Only "this candidate does not exist" moves on; an error inside an existing
            # manifest (one "Error in manifest file" per nesting level) is raised.
            if "[Errno 2]" not in text or text.count("Error in manifest file") != 1:
                raise


_include_first("$(BOARD_DIR)/manifest.py", "$(PORT_DIR)/boards/manifest.py",
               "$(PORT_DIR)/variants/manifest.py")

_here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()
_root = os.path.abspath(os.path.join(_here, "..", ".."))
PORT_FILES = ("__init__.py", "micropython.py", "mp_agent.py", "mp_iot.py", "runner.py",
              "agentconfig.py", "store.py", "download.py", "archive.py", "tarreader.py",
              "capture.py", "appapi.py", "appconfig.py", "modelpkg.py",
              "appservice.py")

# The source tree keeps the ports in ports/ (installed as edgecore_ports by setup.cfg):
# stage them under their import name so package() freezes them as edgecore_ports.
_stage = os.path.join(_here, "build", "frozen")
shutil.rmtree(os.path.join(_stage, "edgecore_ports"), ignore_errors=True)
os.makedirs(os.path.join(_stage, "edgecore_ports"))
for _name in PORT_FILES:
    shutil.copy(os.path.join(_root, "ports", _name), os.path.join(_stage, "edgecore_ports", _name))

package("edgecore", base_path=_root, opt=3)  # noqa: F821
package("edgecore_ports", base_path=_stage, opt=3)  # noqa: F821
