# Not under emulated ARM: the fleet server runs on the operator's hosts, never on a device
"""The fleet server embedded in a thread (``edgecore_fleet.embedded``): it serves until
``stop()``, and ``stop()`` closes everything it opened, also when waitress's loop closed
its wake-up trigger first (CI once saw ``stop()`` raise EBADF writing to it)."""

import socket

import pytest
import requests

from edgecore_fleet.embedded import EmbeddedServer


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"hi"]


def refused(port):
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return True
        return False


@pytest.mark.parametrize("kept_alive", [False, True])
def test_stop_closes_the_listener_and_connections(kept_alive):
    server = EmbeddedServer(hello, threads=2).start()
    session = requests.Session()
    assert session.get(server.url + "/", timeout=5).text == "hi"
    if not kept_alive:
        session.close()
    server.stop()
    assert not server._thread.is_alive()
    assert server._server._map == {}
    assert server._server.trigger._closed
    assert refused(server.port)
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(server.url + "/", timeout=5)


def test_stop_when_the_loop_already_closed_its_trigger():
    server = EmbeddedServer(hello, threads=2).start()
    assert requests.get(server.url + "/", timeout=5).text == "hi"
    server._server.trigger.close()  # as the loop's handle_close does on a poll error
    server.stop()  # before: OSError EBADF from writing to the closed pipe
    assert not server._thread.is_alive()
    assert server._server._map == {}
    assert refused(server.port)


def test_stop_without_start_closes_the_listener():
    server = EmbeddedServer(hello)
    server.stop()
    assert server._server._map == {}
    assert refused(server.port)


def test_a_late_wake_up_after_stop_writes_nothing():
    server = EmbeddedServer(hello).start()
    server.stop()
    server._server.pull_trigger()  # a worker finishing late: no write to a reused fd
    assert server._server.trigger._closed
