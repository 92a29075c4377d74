"""Client: the boto3-shaped methods of the Edge Manager device API over an injected transport.

A call is validate -> frame (edgecore.wire) -> sign (edgecore.sigv4) -> transport -> parse.
The client does no I/O and no retries itself: the transport moves bytes, and the caller
(the agent) decides what to retry, with the classification edgecore.wire provides.

What is not given is resolved as ``boto3.client("sagemaker-edge")`` resolves it: the
platform port's ``client_defaults`` hook (on CPython: the environment and the shared
``~/.aws`` files, see ``edgecore_ports.awsconfig``, and botocore's credential chain)
supplies region, credentials, endpoint URL and the FIPS / dual-stack flags; the host
then comes from ``edgecore.endpoints`` (every partition). Explicit arguments always win.
Without a port (a vendored core) nothing is read: region and credentials are required.
"""

from edgecore import endpoints, sigv4, wire
from edgecore.credentials import Credentials
from edgecore.errors import TransportError

SERVICE = "sagemaker-edge"
SIGNING_NAME = "sagemaker"


def _default_max_body():
    """1 MiB; on MicroPython 1/20 of the heap, at most 64 KiB. A board reads an answer
    whole and parses it beside the agent (its objects take ~4x its size): 3,200 bytes on
    a 64 KiB heap, a GetDeployments answer listing ~8 one-model deployments at once
    (a larger one is refused, naming the bound, and the poll fails until it shrinks)."""
    import gc
    import sys

    if sys.implementation.name != "micropython" or not hasattr(gc, "mem_free"):
        return 1024 * 1024
    return min(64 * 1024, (gc.mem_free() + gc.mem_alloc()) // HEAP_SHARE)


HEAP_SHARE = 20  # a board's API answer may be 1/HEAP_SHARE of its heap


DEFAULT_MAX_BODY = _default_max_body()


def _check_endpoint(url):
    if isinstance(url, str) and "@" in url.split("/", 3)[2 if "://" in url else 0]:
        # Checked first and never echoed: user:password@ would leak into messages and logs.
        raise ValueError("Client: endpoint_url must not carry userinfo (user:password@host)")
    if not isinstance(url, str) or not (url.startswith("https://") or url.startswith("http://")):
        raise ValueError("Client: endpoint_url must be an http(s):// URL, got %s"
                         % (repr(url[:80]) if isinstance(url, str) else type(url).__name__))
    rest = url.split("://", 1)[1]
    if not rest or rest[0] == "/" or "?" in rest or "#" in rest:
        raise ValueError("Client: endpoint_url needs a host, no query or fragment; got %r" % (url,))
    return url.rstrip("/")


def _describe(value):
    if isinstance(value, tuple):
        return "a tuple of %d items" % len(value)
    return "a %s" % type(value).__name__


def _port_defaults(missing, region):
    # The one hook into the platform for configuration; None without a port.
    try:
        from edgecore_ports import client_defaults
    except ImportError as exc:
        if getattr(exc, "name", None) not in (None, "edgecore_ports"):
            raise  # the port is there but broken: say so
        return None
    return client_defaults(SERVICE, missing, region)


class Client:
    """SageMaker Edge Manager device API client.

    ``credentials`` is an ``edgecore.Credentials`` or a provider with ``get(now)`` returning
    one (so refreshed credentials are picked up per call). ``transport`` is
    ``callable(method, url, headers, body) -> (status, headers, body)`` (an int, a
    mapping, bytes: a result that is not such a 3-tuple is a ``TransportError``, items of
    the wrong type a ``ResponseParseError``) and ``clock`` is
    ``callable() -> epoch seconds``; both default to the platform port. ``max_body``
    bounds a response body in bytes (``ResponseParseError`` beyond it): by default
    ``DEFAULT_MAX_BODY``: 1 MiB on CPython, 1/20 of the heap on MicroPython (at most
    64 KiB).

    ``region``, ``credentials``, ``endpoint_url``, ``use_fips_endpoint`` and
    ``use_dualstack_endpoint`` left as None are resolved as boto3 resolves them (module
    doc); ``Client()`` alone works wherever ``boto3.client("sagemaker-edge")`` would. A
    FIPS pseudo region (``us-west-2-fips``) means the region with FIPS, as in botocore.

    ``body_buffer`` (a bytearray, or a memoryview of one): request bodies are written in
    it (``wire.build_request``'s ``into``) and the transport gets a memoryview of it,
    valid during the call: a board's heap then holds no copy of a body (a longer body is
    written into a bytearray of its size).
    """

    def __init__(self, region=None, credentials=None, endpoint_url=None, transport=None,
                 clock=None, max_body=None, use_fips_endpoint=None,
                 use_dualstack_endpoint=None, body_buffer=None):
        given = {"region": region, "credentials": credentials, "endpoint_url": endpoint_url,
                 "use_fips_endpoint": use_fips_endpoint,
                 "use_dualstack_endpoint": use_dualstack_endpoint}
        missing = [k for k in ("region", "credentials", "endpoint_url", "use_fips_endpoint",
                               "use_dualstack_endpoint") if given[k] is None]
        found = _port_defaults(missing, region) if missing else None
        for name in missing:
            if found is not None and found.get(name) is not None:
                given[name] = found[name]
        region = given["region"]
        if region is None:
            raise ValueError("Client: no region: pass region=, or (CPython) set "
                             "AWS_DEFAULT_REGION / AWS_REGION or region in ~/.aws/config")
        if not endpoints.valid_region(region):
            raise ValueError(
                "Client: region must be 1-63 letters, digits, inner hyphens; got %r" % (region,)
            )
        region, pseudo_fips = endpoints.normalize_region(region)
        credentials = given["credentials"]
        if credentials is None:
            raise TypeError("Client: no credentials: pass credentials= (an edgecore.Credentials "
                            "or a provider with get(now))")
        if not (isinstance(credentials, Credentials) or hasattr(credentials, "get")):
            raise TypeError(
                "Client: credentials must be edgecore.Credentials or a provider with get(now)"
            )
        self.region = region
        self._credentials = credentials
        self.use_fips_endpoint = bool(given["use_fips_endpoint"]) or pseudo_fips
        self.use_dualstack_endpoint = bool(given["use_dualstack_endpoint"])
        endpoint_url = given["endpoint_url"]
        if endpoint_url is None:
            endpoint_url = endpoints.resolve(SERVICE, region, self.use_fips_endpoint,
                                             self.use_dualstack_endpoint)[0]
        self.endpoint_url = _check_endpoint(endpoint_url)
        if max_body is None:
            max_body = DEFAULT_MAX_BODY
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise ValueError("Client: max_body must be a positive int (bytes), got %r"
                             % (max_body,))
        self.max_body = max_body
        if transport is None or clock is None:
            # The one place the core reaches for a port, and only when none was injected.
            from edgecore_ports import default_port

            port = default_port()
            transport = transport or port.transport
            clock = clock or port.clock
        self._transport = transport
        self._clock = clock
        self._body_buffer = body_buffer

    def __repr__(self):
        return "Client(region=%r, endpoint_url=%r)" % (self.region, self.endpoint_url)

    def _current_credentials(self, now):
        creds = self._credentials
        if isinstance(creds, Credentials):
            return creds
        return creds.get(now)

    def _call(self, operation, params):
        method, path, headers, body = wire.build_request(operation, params, self._body_buffer)
        now = self._clock()
        creds = self._current_credentials(now)
        url, signed = sigv4.sign(
            method,
            self.endpoint_url + path,
            headers,
            body,
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            session_token=creds.session_token,
            region=self.region,
            service=SIGNING_NAME,
            timestamp=now,
        )
        try:
            result = self._transport(method, url, signed, body)
        except OSError as exc:
            # Ports raise TransportError already; a bare socket error from a custom transport
            # gets the same type so callers handle one exception for "no answer".
            raise TransportError("%s: %s %s failed: %s" % (operation, method, url, exc)) from exc
        if not isinstance(result, tuple) or len(result) != 3:
            # A broken transport is a transport failure, not a TypeError from unpacking.
            raise TransportError(
                "%s: %s %s: the transport returned %s; expected a tuple "
                "(status int, headers mapping, body bytes)"
                % (operation, method, url, _describe(result)))
        # Wrong item types are reported by wire.parse_response (ResponseParseError).
        status, resp_headers, resp_body = result
        return wire.parse_response(operation, status, resp_headers, resp_body,
                                   max_body=self.max_body)

    def get_deployments(self, **params):
        """GetDeployments: the deployments the fleet wants on this device."""
        return self._call("GetDeployments", params)

    def send_heartbeat(self, **params):
        """SendHeartbeat: agent version, metrics, models and the last deployment result."""
        return self._call("SendHeartbeat", params)

    def get_device_registration(self, **params):
        """GetDeviceRegistration: whether the device is registered, and for how long to cache it."""
        return self._call("GetDeviceRegistration", params)
