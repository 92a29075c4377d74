"""Client: the boto3-shaped methods of the Edge Manager device API over an injected transport.

A call is validate -> frame (edgecore.wire) -> sign (edgecore.sigv4) -> transport -> parse.
The client does no I/O and no retries itself: the transport moves bytes, and the caller
(the agent) decides what to retry, with the classification edgecore.wire provides.
"""

from edgecore import sigv4, wire
from edgecore.credentials import Credentials
from edgecore.errors import TransportError

SIGNING_NAME = "sagemaker"


def _is_dns_label(text):
    # botocore's rule for regions: it keeps a region from smuggling a host into the URL.
    if not 0 < len(text) <= 63 or text[0] == "-" or text[-1] == "-":
        return False
    return all("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c == "-" for c in text)


def _check_endpoint(url):
    if not isinstance(url, str) or not (url.startswith("https://") or url.startswith("http://")):
        raise ValueError("Client: endpoint_url must be an http(s):// URL, got %r" % (url,))
    rest = url.split("://", 1)[1]
    if not rest or rest[0] == "/" or "?" in rest or "#" in rest:
        raise ValueError("Client: endpoint_url needs a host, no query or fragment; got %r" % (url,))
    return url.rstrip("/")


class Client:
    """SageMaker Edge Manager device API client.

    ``credentials`` is an ``edgecore.Credentials`` or a provider with ``get(now)`` returning
    one (so refreshed credentials are picked up per call). ``transport`` is
    ``callable(method, url, headers, body) -> (status, headers, body)`` and ``clock`` is
    ``callable() -> epoch seconds``; both default to the platform port.
    """

    def __init__(self, region, credentials, endpoint_url=None, transport=None, clock=None):
        if not isinstance(region, str) or not _is_dns_label(region):
            raise ValueError(
                "Client: region must be 1-63 letters, digits, inner hyphens; got %r" % (region,)
            )
        if not (isinstance(credentials, Credentials) or hasattr(credentials, "get")):
            raise TypeError(
                "Client: credentials must be edgecore.Credentials or a provider with get(now)"
            )
        self.region = region
        self._credentials = credentials
        if endpoint_url is None:
            endpoint_url = "https://edge.sagemaker.%s.amazonaws.com" % region
        self.endpoint_url = _check_endpoint(endpoint_url)
        if transport is None or clock is None:
            # The one place the core reaches for a port, and only when none was injected.
            from edgecore_ports import default_port

            port = default_port()
            transport = transport or port.transport
            clock = clock or port.clock
        self._transport = transport
        self._clock = clock

    def __repr__(self):
        return "Client(region=%r, endpoint_url=%r)" % (self.region, self.endpoint_url)

    def _current_credentials(self, now):
        creds = self._credentials
        if isinstance(creds, Credentials):
            return creds
        return creds.get(now)

    def _call(self, operation, params):
        method, path, headers, body = wire.build_request(operation, params)
        now = self._clock()
        creds = self._current_credentials(now)
        url = self.endpoint_url + path
        signed = sigv4.sign_request(
            method,
            url,
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
            status, resp_headers, resp_body = self._transport(method, url, signed, body)
        except OSError as exc:
            # Ports raise TransportError already; a bare socket error from a custom transport
            # gets the same type so callers handle one exception for "no answer".
            raise TransportError("%s: %s %s failed: %s" % (operation, method, url, exc)) from exc
        return wire.parse_response(operation, status, resp_headers, resp_body)

    def get_deployments(self, **params):
        """GetDeployments: the deployments the fleet wants on this device."""
        return self._call("GetDeployments", params)

    def send_heartbeat(self, **params):
        """SendHeartbeat: agent version, metrics, models and the last deployment result."""
        return self._call("SendHeartbeat", params)

    def get_device_registration(self, **params):
        """GetDeviceRegistration: whether the device is registered, and for how long to cache it."""
        return self._call("GetDeviceRegistration", params)
