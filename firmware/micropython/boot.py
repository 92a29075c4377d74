# boot.py for an ESP32-class board or a Raspberry Pi Pico W running the edgecore agent.
#
# Joins Wi-Fi and sets the clock from NTP (SigV4 signatures are rejected by AWS when
# the clock is more than 5 minutes off, and these boards boot at 2000-01-01 or 2021).
# Wi-Fi settings come from /wifi.json: {"ssid": "...", "password": "...",
# "country": "GB", "hostname": "edge-cam-1"} (country and hostname optional).
# main.py runs next, whether or not this succeeded: the agent retries on its own.
import json
import time

import network


def _wifi_config():
    try:
        with open("/wifi.json") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as exc:
        print("boot: no usable /wifi.json:", exc)
        return None


def connect_wifi(cfg, timeout_s=30):
    if cfg.get("country"):
        try:
            network.country(cfg["country"])  # Wi-Fi channels/power allowed there
        except (AttributeError, ValueError):
            pass
    if cfg.get("hostname"):
        try:
            network.hostname(cfg["hostname"])
        except (AttributeError, ValueError):
            pass
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(cfg["ssid"], cfg.get("password", ""))
        deadline = time.ticks_add(time.ticks_ms(), timeout_s * 1000)
        while not wlan.isconnected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            time.sleep_ms(200)
    if wlan.isconnected():
        print("boot: wifi connected:", wlan.ifconfig()[0])
    else:
        print("boot: wifi not connected after %d s" % timeout_s)
    return wlan


def sync_time(tries=5):
    import ntptime

    for attempt in range(tries):
        try:
            ntptime.settime()  # sets the RTC to UTC
            print("boot: time set from NTP:", time.gmtime())
            return True
        except (OSError, OverflowError) as exc:
            print("boot: NTP attempt %d failed: %s" % (attempt + 1, exc))
            time.sleep(2)
    return False


_cfg = _wifi_config()
if _cfg and connect_wifi(_cfg).isconnected():
    sync_time()
