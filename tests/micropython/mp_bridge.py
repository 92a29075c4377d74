"""MicroPython side of tests/micropython/bridge.mjs: a socket layer for
``edgecore_ports.micropython.make_transport(connect=connect)`` in the WebAssembly port.

Buffers are passed to JS by address (``uctypes.addressof``): the JS side copies bytes
straight into / out of the heap, so a read allocates nothing here. A negative result
is -errno and becomes ``OSError``, as a real socket's failure would.
"""

import edgecore_bridge as _js
import uctypes


def _check(n):
    if n < 0:
        raise OSError(-n, _js.errmsg())
    return n


class Stream:
    def __init__(self, sid):
        self.sid = sid

    def write(self, data):
        if not len(data):
            return 0
        return _check(_js.write(self.sid, uctypes.addressof(data), len(data)))

    def readinto(self, buf):
        if not len(buf):
            return 0
        return _check(_js.readinto(self.sid, uctypes.addressof(buf), len(buf)))

    def settimeout(self, seconds):
        _js.settimeout(self.sid, seconds or 0)

    def close(self):
        if self.sid is not None:
            _js.close(self.sid)
            self.sid = None


def connect(host, port, use_tls, timeout):
    return Stream(_check(_js.connect(host, port, use_tls, timeout or 0)))
