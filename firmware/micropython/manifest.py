# Freezes edgecore into a MicroPython firmware image (bytecode in flash, not in RAM).
#
#   cd micropython/ports/esp32   # or ports/rp2 (BOARD=RPI_PICO_W)
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/edgecore/firmware/micropython/manifest.py
#
# Frozen: the portable core (package edgecore, every module) and, as the package
# edgecore_ports, only what a board needs: the port interface (ports/__init__.py), the
# MicroPython port (ports/micropython.py) and the agent's executor (runner, agentconfig,
# store, download) with its board entry point (mp_agent). The CPython-only ports
# (cpython, linux, raspberrypi, jetson, credentials, signing) are left out. The board's
# own manifest is included first so its modules stay (FROZEN_MANIFEST replaces it): the
# board's if it has one (RPI_PICO_W: networking, ntptime, mip), else the port's.
import os
import shutil

try:
    include("$(BOARD_DIR)/manifest.py")  # noqa: F821 (a manifest built-in)
except Exception:  # this board has no manifest of its own
    include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821

_here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()
_root = os.path.abspath(os.path.join(_here, "..", ".."))
PORT_FILES = ("__init__.py", "micropython.py", "mp_agent.py", "runner.py", "agentconfig.py",
              "store.py", "download.py")

# The source tree keeps the ports in ports/ (installed as edgecore_ports by setup.cfg):
# stage them under their import name so package() freezes them as edgecore_ports.
_stage = os.path.join(_here, "build", "frozen")
shutil.rmtree(os.path.join(_stage, "edgecore_ports"), ignore_errors=True)
os.makedirs(os.path.join(_stage, "edgecore_ports"))
for _name in PORT_FILES:
    shutil.copy(os.path.join(_root, "ports", _name), os.path.join(_stage, "edgecore_ports", _name))

package("edgecore", base_path=_root, opt=3)  # noqa: F821
package("edgecore_ports", base_path=_stage, opt=3)  # noqa: F821
