"""The device agent for MicroPython boards (ESP32, Raspberry Pi Pico W, ...) and the
MicroPython unix binary on small Linux devices.

It is the one executor (``edgecore_ports.runner.Runner``) with the MicroPython port and
the flash layout (``edgecore_ports.store.PointerStore``: a small pointer file per model,
no symlinks). Runs on CPython too (tests). Use::

    from edgecore_ports.mp_agent import Agent
    a = Agent(config)            # config: the agent.json dict (edgecore_ports.agentconfig)
    a.cycle()                    # poll -> download -> verify -> activate -> heartbeat
    a.run(feed=wdt.feed)         # forever, every heartbeat_interval seconds
    a.api.list_models()          # the applications' API, in-process (edgecore_ports.appapi)

Layout under ``model_dir``::

    <handle>/current.json      {"sha1", "file", "name", "version"}: the active version
    <handle>/<sha1>/<file>     a verified version (+ edgecore.json, its metadata)
    <handle>/<sha1>.tmp/       a download in progress (+ .resume.json: resumed after a reset)

An application finds its model with ``active_model(model_dir, handle)``, or through
``a.api``: the same operations as the Linux agent's local API (ListModels,
DescribeModel, WatchModels, RecordInference, CaptureData, GetCaptureDataStatus) as
methods, built on first use (``edgecore_ports.appservice``; nothing is allocated for it
until then). With ``capture_s3_uri`` set, each ``cycle()`` ends with one bounded step
of capture uploads (at most one PUT, with the ``request_timeout`` deadline), after the
deployments and the heartbeat.
"""

import gc

from edgecore import agentstate
from edgecore.wire import utf8_buffer
from edgecore_ports import ConfigError  # noqa: F401 (part of this module's interface)
from edgecore_ports.agentconfig import load_config, read_config_file  # noqa: F401
from edgecore_ports.runner import MICROPYTHON, Runner, make_http
from edgecore_ports.store import POINTER, PointerStore  # noqa: F401


def active_model(model_dir, handle):
    """(path of the active model file, pointer dict) of ``handle``, or (None, None)."""
    store = PointerStore(model_dir, None, None)
    try:
        path = store.active_path(handle)
    except ValueError:  # not a valid handle
        return None, None
    return (path, store.read_pointer(handle)) if path else (None, None)


def compact(value):
    """A copy of a JSON value (the agent state) made of new objects, strings and numbers
    included (on a board a str, a float or an int past 2**30 is an object of its own)."""
    if isinstance(value, dict):
        out = {}
        for key in value:
            out[compact(key)] = compact(value[key])
        return out
    if isinstance(value, list):
        out = list(value)
        for i in range(len(out)):
            out[i] = compact(out[i])
        return out
    if isinstance(value, str):
        return str(utf8_buffer(value), "utf-8")
    if isinstance(value, bool) or value is None:
        return value
    return value * 1  # int or float: a new object where it is not immediate (-0.0 kept)


def _digest(state):
    """``agentstate.dump``'s digest of ``state`` (what ``Runner.save`` compares), None
    for a state too large to save."""
    try:
        return agentstate.dump(state)
    except agentstate.StateError:
        return None


class Agent(Runner):
    """The executor for a board. ``config``: the agent.json dict (validated here).

    Injectable: ``port`` (default ``edgecore_ports.micropython``), ``connect`` (the port's
    socket layer, for runtimes without sockets), and Runner's ``log``, ``sleep``,
    ``rand``, ``reload_hook`` (``(handle, path_or_None)``: (re)load the model; raise to
    fail), ``progress`` (``(handle, done, total)`` per download chunk).
    """

    def __init__(self, config, port=None, connect=None, **kwargs):
        config = load_config(config)
        if port is None:
            from edgecore_ports import micropython as port
        http = make_http(port, config, connect=connect)
        Runner.__init__(self, config, port=port, http=http, store=PointerStore, **kwargs)
        self._apps = None

    @property
    def api(self):
        """The applications' ``AppApi`` (created on first use; see the module doc)."""
        return self.apps.api

    @property
    def apps(self):
        if self._apps is None:
            if self.state is None:
                self.start()
            from edgecore_ports.appservice import AppServices

            self._apps = AppServices(self)
        return self._apps

    def start(self):
        """Runner.start, then (MicroPython) the heap set out for the cycles: see
        ``settle``."""
        Runner.start(self)
        if MICROPYTHON:
            self.settle(prepare=True)

    def cycle(self):
        if MICROPYTHON:
            gc.collect()  # the cycle's allocations start from the fewest holes
        report = Runner.cycle(self)
        if self.config["capture_s3_uri"]:
            try:
                apps = self.apps
            except Exception as exc:  # e.g. an unusable captures directory: the cycle's
                # deployments and heartbeat stand (its report, then settle); tried again
                # at the next cycle
                self.log("error", "capture.unavailable",
                         reason="%s: %s" % (exc.__class__.__name__, exc))
            else:
                apps.step()  # after the deployments and the heartbeat, bounded
        if MICROPYTHON:
            self.settle()
        return report

    def settle(self, prepare=False):
        """Lay out what lives across cycles compactly in a board's heap (MicroPython's
        allocator takes the lowest free block that fits, and never moves an object).

        With ``prepare`` (at start): what the first requests would allocate and keep
        is allocated now, next to the other early objects: the client, the transport's
        TLS context and socket guard. Then the state is copied (``compact``) after a
        collection: the copy fills the lowest holes, and the objects a cycle added to
        the state, scattered among its short-lived allocations, go, leaving the large
        free blocks the next cycle's requests need."""
        if prepare:
            self.client  # noqa: B018 (the property builds the client on first use)
            prepare_http = getattr(self.http, "prepare", None)
            if prepare_http is not None:
                urls = (self.config["endpoint_url"], self.config["s3_endpoint_url"])
                prepare_http(tls=not all(u and u.startswith("http://") for u in urls))
        gc.collect()
        with self._lock:  # the application's threads record inferences into it
            try:
                # The copy's dicts iterate in another order on MicroPython, so its JSON
                # differs from the bytes saved: a state unchanged since its save keeps
                # that status (save() compares digests; else the next cycle's first save
                # would rewrite the flash for nothing, every cycle).
                saved = self._saved is not None and _digest(self.state) == self._saved
                self.state = compact(self.state)
                if saved:
                    self._saved = _digest(self.state)
            except MemoryError:  # no room for a second copy: the state stays as it is
                pass
        gc.collect()

    def run(self, feed=None, stop=None):
        """Cycle every heartbeat_interval seconds; ``feed()`` (a watchdog) is called after
        every request, action and download chunk, and every second between cycles."""
        self.feed = feed
        self.run_forever(stop)
