"""``edgecore models`` and ``edgecore capture``: the local API from the shell (CPython).

    edgecore models [--json] [--socket PATH | --config FILE]
    edgecore capture send --model HANDLE --id ID [--input SPEC]... [--output SPEC]...
                          [--aux SPEC]... [--inference-time EPOCH] [--json]
    edgecore capture status ID [--json]

A tensor SPEC is ``NAME=json:<JSON>``, ``NAME=csv:<TEXT>`` or
``NAME=file:<PATH>[:<DTYPE>[:<D1>x<D2>...]]`` (raw bytes; default uint8, one dimension).
The socket is ``--socket``, else the config's ``api_socket`` (or ``<state_dir>/api.sock``),
else ``$EDGECORE_API_SOCKET``, else ``edgecore_ports.app.DEFAULT_SOCKET``.
Exit status: 0 done, 1 the agent refused or could not be reached, 2 bad arguments.
"""

import json
import os
import sys
import time


def socket_path(args):
    if args.socket:
        return args.socket
    if args.config:
        with open(args.config, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("%s: expected a JSON object" % args.config)
        if doc.get("api_socket"):
            return doc["api_socket"]
        if doc.get("state_dir"):
            return os.path.join(doc["state_dir"], "api.sock")
    return None  # AppClient's own default


def parse_tensor(spec):
    """A tensor dict from a command-line SPEC (see the module doc); ValueError if bad."""
    name, eq, rest = spec.partition("=")
    kind, colon, value = rest.partition(":")
    if not name or not eq or not colon or kind not in ("json", "csv", "file"):
        raise ValueError("tensor %r: expected NAME=json:JSON, NAME=csv:TEXT or "
                         "NAME=file:PATH[:DTYPE[:SHAPE]]" % spec)
    if kind == "json":
        return {"name": name, "json": json.loads(value)}
    if kind == "csv":
        return {"name": name, "csv": value}
    path, _, tail = value.partition(":")
    dtype, _, shape = tail.partition(":")
    with open(path, "rb") as f:
        data = f.read()
    from edgecore_ports.app import tensor

    dims = [int(d) for d in shape.split("x")] if shape else None
    return tensor(name, data, dtype or "uint8", dims)


def _client(args):
    from edgecore_ports.app import AppClient

    return AppClient(socket_path(args))


def _run(args, call, show):
    from edgecore_ports.app import ApiError

    try:
        answer = call(_client(args))
    except ApiError as exc:
        sys.stderr.write("edgecore: %s\n" % exc)
        return 1
    except OSError as exc:
        sys.stderr.write("edgecore: error: cannot reach the agent's API: %s\n" % exc)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    else:
        print(show(answer))
    return 0


def _when(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch else "-"


def cmd_models(args):
    def show(answer):
        lines = ["%-24s %-24s %-14s %-12s %-23s %s"
                 % ("HANDLE", "NAME", "VERSION", "SHA1", "ACTIVATED", "PATH")]
        for m in answer["Models"]:
            lines.append("%-24s %-24s %-14s %-12s %-23s %s" % (
                m["ModelHandle"], m.get("ModelName") or "-", m.get("ModelVersion") or "-",
                (m.get("Sha1") or "-")[:12], _when(m.get("ActivatedAt")), m.get("Path") or "-"))
        if not answer["Models"]:
            lines.append("(no active models)")
        return "\n".join(lines)

    return _run(args, lambda c: c.list_models(), show)


def cmd_capture_send(args):
    try:
        tensors = [[parse_tensor(s) for s in (specs or [])]
                   for specs in (args.input, args.output, args.aux)]
    except (OSError, ValueError) as exc:
        sys.stderr.write("edgecore: error: %s\n" % exc)
        return 2
    return _run(args, lambda c: c.capture_data(
        args.model, args.id, tensors[0], tensors[1], tensors[2], args.inference_time),
        lambda a: "%s %s" % (a["CaptureId"], a["Status"]))


def cmd_capture_status(args):
    return _run(args, lambda c: c.get_capture_data_status(args.id),
                lambda a: "%s %s%s" % (a["CaptureId"], a["Status"],
                                       (": " + a["Reason"]) if a.get("Reason") else ""))


def _common(p):
    p.add_argument("--socket", help="the agent's API socket")
    p.add_argument("--config", help="agent config file (for api_socket / state_dir)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def register(sub):
    """Add the ``models`` and ``capture`` commands to the CLI's subparsers."""
    models = sub.add_parser("models", help="list the active models (the agent's local API)")
    _common(models)
    models.set_defaults(func=cmd_models)
    cap = sub.add_parser("capture", help="send a capture, or ask for a capture's status")
    csub = cap.add_subparsers(dest="capture_command", metavar="ACTION")
    csub.required = True
    send = csub.add_parser("send", help="buffer one capture for upload to S3")
    _common(send)
    send.add_argument("--model", required=True, help="model handle")
    send.add_argument("--id", required=True, help="capture id (unique)")
    send.add_argument("--input", action="append", metavar="SPEC", help="an input tensor")
    send.add_argument("--output", action="append", metavar="SPEC", help="an output tensor")
    send.add_argument("--aux", action="append", metavar="SPEC", help="auxiliary data")
    send.add_argument("--inference-time", type=float, help="epoch seconds (default: now)")
    send.set_defaults(func=cmd_capture_send)
    status = csub.add_parser("status", help="IN_PROGRESS, SUCCESS, FAILURE or NOT_FOUND")
    _common(status)
    status.add_argument("id", help="capture id")
    status.set_defaults(func=cmd_capture_status)
