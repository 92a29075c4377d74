"""The fleet server in a thread of another program (the local cloud, tests, the demo).

Waitress (a production-grade, pure-Python, threaded WSGI server with HTTP/1.1 keep-alive)
around a ``FleetApp``; ``stop()`` closes the listener and every open connection, so no
request is served after it returns.

Stopping is done in waitress's own event-loop thread (a trigger thunk), after the worker
threads have finished: closing its sockets from another thread could let the loop accept
one more connection into an emptied map, and a late wake-up of a closed trigger would
write into whatever file descriptor had reused its number.
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

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def start(self):
        self._thread = threading.Thread(target=self._server.run, name="edgecore-fleet",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        server = self._server
        server.task_dispatcher.shutdown(timeout=5)
        trigger = server.trigger

        def close_in_loop():
            trigger._physical_pull = lambda: None  # no wake-up after its pipe is closed
            wasyncore.close_all(server._map)  # the listener, connections, the trigger

        if self._thread is not None and self._thread.is_alive():
            trigger.pull_trigger(close_in_loop)
            self._thread.join(10)
        if server._map:  # the loop never ran or did not stop: close from here
            close_in_loop()
