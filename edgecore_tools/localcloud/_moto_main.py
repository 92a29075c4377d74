"""Subprocess entry point for the S3 stand-in: moto's server on 127.0.0.1, free port.

Usage: python -m edgecore_tools.localcloud._moto_main [PORT]   (default 0: any free port)
Run by ``s3.MotoS3.start`` with INITIAL_NO_AUTH_ACTION_COUNT in its environment (so the
setting never leaks into the caller's process). Prints one JSON line ``{"port": N}`` once
listening, then serves until its stdin closes (the parent stopped or died).
"""

import json
import logging
import signal
import sys


def main():
    # Ctrl-C in a terminal reaches the whole process group: the parent stops this server
    # by closing stdin, so a SIGINT here would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import ThreadedMotoServer

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    sys.stdout.write(json.dumps({"port": port}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
