"""The ``edgecore`` command: run the device agent, show its status (CPython only).

    edgecore run --config FILE [--once]
    edgecore status --config FILE [--json]

``run`` polls GetDeployments, applies deployments (download, verify, activate), and
sends heartbeats every ``heartbeat_interval`` seconds until SIGTERM/SIGINT, serving the
applications' local API meanwhile (``edgecore_ports.appservice``: the Unix socket,
capture uploads); with
``--once`` it does one full cycle and exits 0 when the poll and the heartbeat succeeded
(a deployment that FAILed and was reported still counts), 1 otherwise. Exit 78
(EX_CONFIG) means "fix the configuration": the config file or the credentials are
missing or invalid, so restarting cannot help (the systemd unit does not restart on
it). ``status`` reads the saved state only (no network). Ctrl-C exits 130 without a
traceback; output cut by a closed pipe (``| head``) ends quietly.

Logs: one JSON object per line on stderr, ``{"ts", "level", "event", ...}``. Values
under secret-looking keys, the configured secret key / session token, and
Authorization / Signature / security-token fragments are replaced by ``<redacted>``.
C1 control, bidi and line-separator characters (which could reorder or hide what a
terminal shows) are written as ``\\uXXXX`` escapes in log lines, and escaped the same
way, with C0 controls, in what ``status`` prints. When stderr is a terminal, downloads
show a progress line.
"""

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time

from edgecore import __version__

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
EX_CONFIG = 78  # sysexits.h: configuration error
EX_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
# Characters a terminal acts on instead of showing: C1 controls, bidi embeddings /
# overrides / isolates and marks, line and paragraph separators, lone surrogates
# (which would also make writing the line fail). JSON leaves them raw with
# ensure_ascii=False; C0 controls are escaped by JSON already.
_UNSAFE = "\u0080-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE_IN_JSON = re.compile("[" + _UNSAFE + "]")
_UNSAFE_IN_TEXT = re.compile("[\x00-\x1f\x7f" + _UNSAFE + "]")


def _escape(match):
    return "\\u%04x" % ord(match.group(0))


def printable(text):
    """``text`` for a terminal: control, C1, bidi and separator characters as ``\\uXXXX``
    (other non-ASCII letters stay as they are)."""
    return _UNSAFE_IN_TEXT.sub(_escape, str(text))


_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|authorization|signature|credential|"
    r"private)",
    re.IGNORECASE,
)
_SECRET_TEXT = [
    (
        re.compile(r"(Authorization[\"']?\s*[:=]\s*[\"']?)[^\"',}\n]+", re.IGNORECASE),
        r"\1<redacted>",
    ),
    (re.compile(r"(Signature=)[0-9a-fA-F]+"), r"\1<redacted>"),
    (
        re.compile(r"(X-Amz-Security-Token[\"']?\s*[:=]\s*[\"']?)[^\"'&,}\s]+", re.IGNORECASE),
        r"\1<redacted>",
    ),
    # A key's value, not a description of it ("AWS_SECRET_ACCESS_KEY: not set").
    (
        re.compile(
            r"(aws_secret_access_key\s*[:=]\s*)"
            r"(?!(?:not set|not found|missing|unset|empty|none|null|<redacted>)\b)\S+",
            re.IGNORECASE,
        ),
        r"\1<redacted>",
    ),
]


class JsonLogger:
    """``log(level, event, **fields)`` writing one JSON object per line, secrets redacted."""

    def __init__(self, stream=None, level="info", secrets=(), clock=time.time):
        self.stream = stream or sys.stderr
        self.min_level = LEVELS.get(level, 20)
        self.secrets = [s for s in secrets if s and len(s) >= 4]
        self.clock = clock
        self.progress = None  # a Progress that owns the current terminal line
        self._lock = threading.Lock()

    def redact(self, value, key=""):
        if isinstance(value, dict):
            return {k: self.redact(v, k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact(v, key) for v in value]
        if key and _SECRET_KEY.search(key) and value is not None:
            return "<redacted>"
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, "<redacted>")
            for pattern, repl in _SECRET_TEXT:
                value = pattern.sub(repl, value)
        return value

    def __call__(self, level, event, **fields):
        if LEVELS.get(level, 20) < self.min_level:
            return
        ts = self.clock()
        record = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
            + ".%03dZ" % int((ts % 1) * 1000),
            "level": level,
            "event": event,
        }
        for k, v in fields.items():
            record[k] = self.redact(v, k)
        line = _UNSAFE_IN_JSON.sub(_escape, json.dumps(record, default=str, ensure_ascii=False))
        with self._lock:
            if self.progress is not None:
                self.progress.clear()
            self.stream.write(line + "\n")
            self.stream.flush()


class Progress:
    """A one-line download progress display on a terminal (redrawn at most 10x/s)."""

    def __init__(self, stream, clock=time.monotonic):
        self.stream = stream
        self.clock = clock
        self.shown = False
        self.last = None

    def __call__(self, handle, done, total):
        now = self.clock()
        finished = total is not None and done >= total
        if not finished and self.last is not None and now - self.last < 0.1:
            return
        self.last = now
        mib = done / 1048576.0
        if total:
            text = "%s: %5.1f%% %.1f/%.1f MiB" % (
                handle,
                100.0 * done / total,
                mib,
                total / 1048576.0,
            )
        else:
            text = "%s: %.1f MiB" % (handle, mib)
        self.stream.write("\r\x1b[K" + text)
        self.shown = True
        if finished:
            self.stream.write("\n")
            self.shown = False
        self.stream.flush()

    def clear(self):
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.shown = False


def _fail(message, code=1):
    sys.stderr.write("edgecore: error: %s\n" % (printable(message),))
    return code


def _known_secrets(config):
    creds = config.get("credentials")
    out = []
    if isinstance(creds, dict):
        out = [creds.get("secret_access_key"), creds.get("session_token")]
    out += [os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_SESSION_TOKEN")]
    return [s for s in out if isinstance(s, str)]


class _LoggingBridge(logging.Handler):
    """Routes the ports' ``logging`` records (logger "edgecore") into the JSON logger, so
    stderr stays one redacted JSON object per line."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def emit(self, record):
        try:
            level = record.levelname.lower()
            self.log(
                "warning" if level == "critical" else level,
                "python.log",
                logger=record.name,
                message=record.getMessage(),
            )
        except Exception:  # a log line must never take the agent down
            self.handleError(record)


def route_python_logging(log):
    """Send the "edgecore" logger's records through ``log``; returns the handler."""
    logger = logging.getLogger("edgecore")
    for old in [h for h in logger.handlers if isinstance(h, _LoggingBridge)]:
        logger.removeHandler(old)
    handler = _LoggingBridge(log)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # the JSON logger applies --log-level itself
    logger.propagate = False  # no plain-text copy through the root/last-resort handler
    return handler


def sd_notify(message, environ=None):
    """Send ``message`` (e.g. "READY=1") to systemd's $NOTIFY_SOCKET; False when not under
    a Type=notify unit or when the socket is gone (never raises)."""
    import socket

    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not path or path[0] not in "/@":
        return False
    if path[0] == "@":
        path = "\0" + path[1:]  # Linux abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(path)
            s.sendall(message.encode("ascii"))
        return True
    except OSError:
        return False


def start_watchdog(stop, environ=None):
    """Send WATCHDOG=1 every WATCHDOG_USEC/2 until ``stop`` (a threading.Event) is set.

    It proves the process is alive, not that cycles progress: a hung cycle is bounded by
    the transport timeouts and the retry budget instead.
    """
    environ = os.environ if environ is None else environ
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0 or environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return None

    def loop():
        while not stop.wait(usec / 2e6):
            sd_notify("WATCHDOG=1", environ)

    thread = threading.Thread(target=loop, name="sd-watchdog", daemon=True)
    thread.start()
    return thread


def _start_exit_code(exc):
    """EX_CONFIG for what only a fixed config or credentials can cure (no credentials
    found, a malformed source, a certificate the IoT endpoint refuses); 1 otherwise."""
    from edgecore_ports.credentials import CredentialsError
    from edgecore_ports.runner import ConfigError

    if isinstance(exc, ConfigError):
        return EX_CONFIG
    if isinstance(exc, CredentialsError) and not getattr(exc, "retryable", False):
        return EX_CONFIG
    return 1


def cmd_run(args):
    from edgecore.agentstate import StateError
    from edgecore.errors import EdgecoreError
    from edgecore_ports.runner import ConfigError, Runner, read_config_file

    try:
        config = read_config_file(args.config)
    except ConfigError as exc:
        return _fail(exc, EX_CONFIG)
    log = JsonLogger(level=args.log_level, secrets=_known_secrets(config))
    route_python_logging(log)
    progress = None
    if sys.stderr.isatty() and not args.no_progress:
        progress = Progress(sys.stderr)
        log.progress = progress
    stop = threading.Event()

    def on_signal(signum, frame):
        log("info", "agent.stopping", signal=signum)
        stop.set()

    try:
        runner = Runner(config, log=log, progress=progress, sleep=stop.wait)
        runner.start()
    except StateError as exc:
        return _fail(
            "%s (state file %s; move it away to start from scratch)"
            % (exc, os.path.join(config["state_dir"], "state.json"))
        )
    except (EdgecoreError, OSError, ValueError) as exc:
        return _fail("cannot start: %s" % (log.redact(str(exc)),), _start_exit_code(exc))
    log(
        "info",
        "agent.started",
        device=config["device_name"],
        fleet=config["fleet_name"],
        model_dir=config["model_dir"],
        once=bool(args.once),
    )
    if args.once:
        report = runner.cycle()
        if not report["ok"]:
            # One line: the first line of each error (AWS appends canonical strings).
            return _fail(
                log.redact("; ".join(e.strip().split("\n")[0].strip() for e in report["errors"]))
            )
        log("info", "agent.cycle_ok", results=len(report["results"]))
        return 0
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from edgecore_ports.appservice import AppServices

    # The applications' API (socket, capture uploads): the service loop only, not --once.
    # Deployments and heartbeats go on without it when it cannot start.
    apps = None
    try:
        apps = AppServices(runner)
        apps.serve()
    except (OSError, ValueError) as exc:
        log("error", "apps.unavailable", reason="%s: %s" % (exc.__class__.__name__, exc))
    sd_notify("READY=1")
    start_watchdog(stop)
    try:
        runner.run_forever(stop=stop.is_set)
    except StateError as exc:
        return _fail(exc)
    finally:
        stop.set()  # ends the watchdog thread
        sd_notify("STOPPING=1")
        if apps is not None:
            apps.stop()
    log("info", "agent.stopped")
    return 0


def _when(epoch):
    if epoch is None:
        return "never"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
    except (TypeError, ValueError, OverflowError, OSError):
        return "invalid time %s" % (printable(repr(epoch)[:40]),)


def status_summary(state):
    """The parts of a state `edgecore status` shows, as a JSON-able dict."""
    active = []
    for handle in sorted(state["active"]):
        e = state["active"][handle]
        active.append(
            {
                "handle": handle,
                "name": e["name"],
                "version": e["version"],
                "sha1": e["sha1"],
                "path": e.get("path"),
                "deployment": e.get("deployment"),
                "activated": e.get("activated"),
            }
        )
    inflight = state.get("inflight")
    return {
        "active_models": active,
        "in_flight": inflight["name"] if inflight else None,
        "queued": [q["name"] for q in state.get("queue", [])],
        "pending_results": [p["DeploymentName"] for p in state["pending"]],
        "last_result": state.get("last_result"),
        "last_heartbeat": state.get("last_heartbeat"),
        "heartbeat_failures": state.get("heartbeat_failures", 0),
    }


def cmd_status(args):
    from edgecore import agentstate
    from edgecore_ports.runner import STATE_FILE, ConfigError, read_config_file

    try:
        config = read_config_file(args.config)
    except ConfigError as exc:
        return _fail(exc, EX_CONFIG)
    path = os.path.join(config["state_dir"], STATE_FILE)
    fixed = []
    try:
        with open(path, "rb") as f:
            state = agentstate.loads(f.read(agentstate.MAX_STATE_BYTES + 1), fixed)
    except FileNotFoundError:
        state = agentstate.new_state()
    except OSError as exc:
        return _fail("cannot read %s: %s" % (path, exc.strerror))
    except agentstate.StateError as exc:
        return _fail(exc)
    summary = status_summary(state)
    summary["device"] = config["device_name"]
    summary["fleet"] = config["fleet_name"]
    if fixed:
        summary["repaired"] = fixed
    if args.json:
        # ensure_ascii: every non-ASCII character, bidi and C1 included, is escaped.
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    print(printable_lines(_status_lines(config, summary)))
    return 0


def printable_lines(lines):
    return "\n".join(printable(line) for line in lines)


def _status_lines(config, summary):
    out = ["device %s (fleet %s)" % (config["device_name"], config["fleet_name"])]
    if summary.get("repaired"):
        out.append(
            "state: out-of-range values reset on load (the agent does the same): %s"
            % ", ".join(summary["repaired"])
        )
    if summary["active_models"]:
        out.append("active models:")
        for m in summary["active_models"]:
            out.append(
                "  %-20s %s %s  sha1 %s  since %s"
                % (m["handle"], m["name"], m["version"], m["sha1"][:12], _when(m["activated"]))
            )
    else:
        out.append("active models: none")
    if summary["in_flight"]:
        out.append("deployment in flight: %s" % summary["in_flight"])
    res = summary["last_result"]
    if res:
        out.append(
            "last deployment: %s %s at %s: %s"
            % (
                res["DeploymentName"],
                res.get("DeploymentStatus", "?"),
                _when(res.get("DeploymentEndTime")),
                res.get("DeploymentStatusMessage", ""),
            )
        )
        for m in res["DeploymentModels"]:
            line = "  %s %s -> %s: %s" % (
                m.get("ModelHandle", "?"),
                m.get("DesiredState", "?"),
                m.get("Status", "?"),
                m.get("StatusReason", ""),
            )
            if m.get("RollbackFailureReason"):
                line += " (rollback failed: %s)" % m["RollbackFailureReason"]
            out.append(line)
    else:
        out.append("last deployment: none")
    if summary["pending_results"]:
        out.append("results waiting for a heartbeat: %s" % ", ".join(summary["pending_results"]))
    hb = "last heartbeat: %s" % _when(summary["last_heartbeat"])
    if summary["heartbeat_failures"]:
        hb += " (%d failed since)" % summary["heartbeat_failures"]
    out.append(hb)
    return out


def build_parser():
    parser = argparse.ArgumentParser(
        prog="edgecore", description="SageMaker Edge Manager device agent (edgecore)."
    )
    parser.add_argument("--version", action="version", version="edgecore " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    run = sub.add_parser("run", help="run the agent (poll, deploy, heartbeat)")
    run.add_argument("--config", required=True, help="agent config file (JSON)")
    run.add_argument("--once", action="store_true", help="one full cycle, then exit")
    run.add_argument("--log-level", default="info", choices=sorted(LEVELS))
    run.add_argument(
        "--no-progress", action="store_true", help="no download progress line, even on a terminal"
    )
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="show active models, last result, last heartbeat")
    status.add_argument("--config", required=True, help="agent config file (JSON)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    from edgecore_tools import cli_apps

    cli_apps.register(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except KeyboardInterrupt:  # Ctrl-C outside the service loop (which handles SIGINT)
        sys.stderr.write("edgecore: interrupted\n")
        return EX_INTERRUPTED
    except BrokenPipeError:
        # `edgecore status | head`: the reader is gone. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again, and stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1


if __name__ == "__main__":
    sys.exit(main())
