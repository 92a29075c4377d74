"""The fleet server in a thread of another program (the local cloud, tests, the demo).

Waitress (a production-grade, pure-Python, threaded WSGI server with HTTP/1.1 keep-alive)
around a ``FleetApp``; ``stop()`` closes the listener and every open connection, so no
request is served after it returns.

Stopping is done in waitress's own event-loop thread, after the worker threads have
finished: closing its sockets from another thread could let the loop accept one more
connection into an emptied map. The loop runs in slices of 0.2 s and ends by itself once
``stop()`` has set its flag; the trigger (waitress's wake-up pipe) only makes that
sooner, and is written only while it is open, under the lock that closes it: a write
after its pipe is closed would fail (EBADF, seen once in CI when the loop had closed the
trigger on an error of its own) or land in whatever file descriptor had reused its number.
"""

import threading

from waitress import wasyncore
from waitress.server import create_server


class EmbeddedServer:
    """Serve `app` on host:port (0: a free port) from ``start()`` to ``stop()``."""

    def __init__(self, app, host="127.0.0.1", port=0, threads=8):
        self._server = create_server(app, host=host, port=port, threads=threads,
                                     ident="edgecore-fleet", channel_timeout=120,
                                     asyncore_loop_timeout=0.2, asyncore_use_poll=True)
        self.host = self._server.effective_host
        self.port = int(self._server.effective_port)
        self._thread = None
        self._stopping = False
        self._lock = threading.Lock()

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="edgecore-fleet", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        server = self._server
        try:
            while not self._stopping and server._map:
                wasyncore.loop(timeout=0.2, map=server._map, use_poll=True, count=1)
        finally:
            self._close()

    def _close(self):
        """Close the listener, every connection and the trigger (in the loop's thread,
        unless the loop never ran or did not end)."""
        trigger = self._server.trigger
        with self._lock:
            trigger._physical_pull = lambda: None  # no wake-up once its pipe is closed
            wasyncore.close_all(self._server._map, ignore_all=True)  # every one tried

    def stop(self):
        server = self._server
        server.task_dispatcher.shutdown(timeout=5)
        if self._thread is not None and self._thread.is_alive():
            self._stopping = True
            with self._lock:
                if not server.trigger._closed:
                    try:
                        server.trigger.pull_trigger()  # end the loop's current slice now
                    except OSError:
                        pass  # the loop still sees the flag within 0.2 s
            self._thread.join(10)
        if server._map:  # the loop never ran or did not end: close from here
            self._close()
