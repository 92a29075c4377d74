# main.py: runs the edgecore device agent on a MicroPython board (ESP32, Pico W).
#
# Needs edgecore on the board: frozen into the firmware (manifest.py), or copied as
# .mpy (build-mpy.sh; `mpremote cp -r dist/lib :`), or `mpremote mip install ...`.
# /agent.json holds the agent config (see edgecore_ports.mp_agent), e.g.:
#   {"device_name": "cam-1", "fleet_name": "cams", "region": "eu-west-1",
#    "model_dir": "/models", "state_dir": "/state",
#    "credentials": {"access_key_id": "AKIA...", "secret_access_key": "..."},
#    "ca_bundle": "/certs/AmazonRootCA1.der", "heartbeat_interval": 300, "timeout": 6}
# (the file holds a secret: keep the board's filesystem to yourself).
#
# A hardware watchdog resets the board if the agent hangs: it is fed after every step
# of a cycle (each request, action and 4 KiB download chunk) and every second between
# cycles. The RP2040's watchdog allows at most 8.3 s, hence 8 s and a 6 s socket timeout.
import gc
import json

import machine

from edgecore_ports.mp_agent import Agent, active_model, read_config_file

CONFIG = "/agent.json"
WDT_TIMEOUT_MS = 8000

config = read_config_file(CONFIG)
wdt = machine.WDT(timeout=WDT_TIMEOUT_MS)


def on_model_change(handle, path):
    """The agent activated a model (path) or unloaded one (None): (re)load it here."""
    print(json.dumps({"event": "model.changed", "handle": handle, "path": path}))


agent = Agent(config, reload_hook=on_model_change, progress=lambda *args: wdt.feed())
agent.start()  # loads the saved state, repairs the model pointers
for handle in agent.state["active"]:  # the models active before the reboot
    on_model_change(handle, active_model(config["model_dir"], handle)[0])
gc.collect()
print("edgecore agent: %d bytes of heap free" % gc.mem_free())
agent.run(feed=wdt.feed)
