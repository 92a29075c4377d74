"""What a real botocore client would send: URL, headers and body, captured before the wire.

Development and test tool (CPython, needs botocore): ``scripts/gen_endpoints.py`` builds
edgecore's endpoint table from it, and the tests compare edgecore with it.

``capture(service, operation, params, **client_kwargs) -> Sent`` builds
a botocore client for ``service`` (a shared botocore session, so the data files load once)
with dummy keys unless given (``botocore_session``: one that reads the environment and
files, where the default one reads neither), registers a ``before-send`` hook that records the
prepared request and answers it with ``response`` (status, headers, body; default an
empty 200), and returns the recording, or the exception the client raised before or
after sending (``Sent.error``). Used to compare edgecore with botocore on the same input.
"""

import botocore.config
import botocore.session
from botocore.awsrequest import AWSResponse

_session = None


class _Raw:
    def __init__(self, body):
        self._body = body

    def stream(self, **kwargs):
        yield self._body


class Sent:
    url = None
    headers = None
    body = None
    result = None
    error = None

    @property
    def signing_region(self):
        auth = self.headers["Authorization"]
        return auth.split("Credential=")[1].split(",")[0].split("/")[2]

    def __repr__(self):
        return "Sent(url=%r, error=%r)" % (self.url, self.error)


def session():
    global _session
    if _session is None:
        _session = botocore.session.Session()
        # No config file or environment of the machine running the tests.
        _session.set_config_variable("config_file", "/nonexistent/edgecore-test-config")
        _session.set_config_variable("credentials_file", "/nonexistent/edgecore-test-creds")
    return _session


def capture(service, operation, params, response=(200, {}, b""), config=None,
            region_name="us-west-2", endpoint_url=None, botocore_session=None, **kwargs):
    kwargs.setdefault("aws_access_key_id", "AKIDEXAMPLE")
    kwargs.setdefault("aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    cfg = botocore.config.Config(retries={"total_max_attempts": 1}, **(config or {}))
    sent = Sent()

    def before_send(request, **_):
        sent.url = request.url
        sent.headers = dict((k, v.decode() if isinstance(v, bytes) else v)
                            for k, v in request.headers.items())
        sent.body = request.body
        status, headers, body = response
        return AWSResponse(request.url, status, headers, _Raw(body))

    try:
        client = (botocore_session or session()).create_client(
            service, region_name=region_name, endpoint_url=endpoint_url, config=cfg, **kwargs)
        client.meta.events.register("before-send", before_send)
        sent.result = getattr(client, _snake(operation))(**params)
    except Exception as exc:  # what boto3 raises is the observation
        sent.error = exc
    return sent


def _snake(name):
    out = ""
    for i, c in enumerate(name):
        if c.isupper() and i:
            out += "_"
        out += c.lower()
    return out
