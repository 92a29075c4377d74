"""Application serving in the agent process (issue 13): the applications' API wired to the
executor. Runs on CPython and MicroPython; only ``serve`` (the Unix socket, the uploader's
thread) is CPython's.

    apps = AppServices(runner)    # after runner.start(); runner: edgecore_ports.runner.Runner
    apps.serve()                  # CPython: the socket (api_socket) and the uploader thread
    ...
    apps.stop()
    apps.step()                   # MicroPython: one bounded upload step per cycle

What it holds:

- ``models``: an ``appapi.ModelSet`` built from the runner's state and refreshed after
  every save (``runner.on_saved``), so ``WatchModels`` waiters wake exactly when the
  active set changed (``ModelSet.update`` compares versions).
- ``store`` / ``uploader`` (``capture_s3_uri`` set): the capture buffer in
  ``<state_dir>/captures`` (0700), bounded by ``capture_buffer_bytes``, and its uploader
  with a transport of its own (the executor's stays free for deployments and
  heartbeats), the runner's credentials, signing clock (``Runner.now``; a skewed answer
  corrects it through ``Runner.fix_clock``) and S3 endpoint rules
  (``Runner.s3_location``), one deadline (``request_timeout``) per PUT.
- ``api``: the ``appapi.AppApi`` over them and ``Runner.record_inference``.
- ``server`` (CPython, after ``serve``): ``localapi.LocalApiServer`` on
  ``appconfig.api_socket_path(config)``, mode 0660, the agent's group.
"""

import os

from edgecore_ports.appapi import AppApi, ModelSet, models_from_state
from edgecore_ports.appconfig import api_socket_path

CAPTURE_DIR = "captures"


class AppServices:
    """See the module doc. ``runner``: a started ``Runner`` (its state loaded); ``http``:
    the uploader's transport (default: the runner's on MicroPython, where one thread
    does everything; a new one from the port on CPython)."""

    def __init__(self, runner, http=None):
        self.runner = runner
        config = runner.config
        self.models = ModelSet(models_from_state(runner.state or {}))
        self.store = self.uploader = None
        self._own_http = None  # the uploader's transport when made here: closed by stop()
        if config["capture_s3_uri"]:
            self._capture(runner, config, http)
        self.api = AppApi(self.models, record_inference=runner.record_inference,
                          store=self.store, uploader=self.uploader,
                          device=config["device_name"], fleet=config["fleet_name"],
                          clock=runner.port.clock)
        self.server = None
        runner.on_saved = self.refresh

    def _capture(self, runner, config, http):
        from edgecore_ports.capture import CaptureStore, Uploader
        from edgecore_ports.runner import MICROPYTHON, make_http

        if http is None:
            http = runner.http if MICROPYTHON else make_http(runner.port, config)
            if http is not runner.http:
                self._own_http = http
        path = runner.state_dir + "/" + CAPTURE_DIR
        self.store = CaptureStore(path, runner.port, config["capture_buffer_bytes"])
        if hasattr(os, "chmod"):
            os.chmod(path, 0o700)
        self.uploader = Uploader(
            self.store, config["capture_s3_uri"], config["fleet_name"], config["device_name"],
            config["region"], http, runner.credentials, runner.now,
            batch_size=config["capture_batch_size"],
            push_interval=config["capture_push_interval"], on_skew=runner.fix_clock,
            log=runner.log, locate=runner.s3_location, timeout=config["request_timeout"])

    def refresh(self, state):
        """The runner saved ``state``: the API shows it (watchers woken if it changed).
        Never raises: the executor's save must not fail for the API's sake."""
        try:
            self.models.update(models_from_state(state))
        except Exception as exc:
            self.runner.log("error", "localapi.refresh_failed",
                            reason="%s: %s" % (exc.__class__.__name__, exc))

    def step(self):
        """One bounded step of capture uploads (sealing, at most one PUT with its
        deadline); never raises. The board agent calls it once per cycle."""
        if self.uploader is None:
            return 0
        try:
            return self.uploader.step()
        except Exception as exc:  # a disk error must not stop the agent's cycles
            self.runner.log("error", "capture.step_failed",
                            reason="%s: %s" % (exc.__class__.__name__, exc))
            return 0

    def serve(self):
        """CPython: start the uploader's thread and the local API's socket. A socket
        that cannot be bound is logged and the agent goes on without it (deployments
        and heartbeats must not stop for it); returns the server or None."""
        from edgecore_ports.localapi import LocalApiServer

        config = self.runner.config
        if self.uploader is not None:
            self.uploader.start()
        path = api_socket_path(config)
        try:
            self.server = LocalApiServer(self.api, path,
                                         max_connections=config["api_max_connections"],
                                         log=self.runner.log).start()
        except OSError as exc:
            self.runner.log("error", "localapi.unavailable", path=path,
                            reason="%s: %s" % (exc.__class__.__name__, exc))
        return self.server

    def stop(self):
        """Close the socket (connections end, the file goes), stop the uploader and close
        its transport when it is this object's own (its kept-alive connections)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.uploader is not None:
            self.uploader.stop()
        http, self._own_http = self._own_http, None
        if http is not None and hasattr(http, "close"):
            http.close()
        self.runner.on_saved = None
