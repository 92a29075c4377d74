"""The exception hierarchy: every error edgecore raises is one of these.

Messages name the operation, the field and the expected form, and never carry a
secret (keys, tokens) -- callers may log them as they are.
"""


class EdgecoreError(Exception):
    """Base class of every edgecore error."""


class ParamValidationError(EdgecoreError):
    """Request parameters break the service model; raised before anything is sent.

    ``field`` is the path of the offending member (``DeploymentResult.DeploymentModels[2].Status``),
    ``rule`` the broken constraint (``enum``, ``pattern``, ``min``, ``required``, ``type`` ...).
    """

    def __init__(self, operation, field, rule, detail):
        self.operation = operation
        self.field = field
        self.rule = rule
        super().__init__(
            "%s: invalid parameter %s (%s): %s"
            % (operation, field or "<input>", rule, detail)
        )


class ResponseParseError(EdgecoreError):
    """A response could not be understood (bad JSON, wrong member types, too large)."""

    def __init__(self, operation, field, detail, status=None):
        self.operation = operation
        self.field = field
        self.status = status
        super().__init__(
            "%s: malformed response at %s: %s" % (operation, field or "<body>", detail)
        )


class ClientError(EdgecoreError):
    """The service answered with an error.

    ``code`` is the AWS error code (``InternalServiceException``, ``ThrottlingException``,
    ``InvalidSignatureException`` ...), ``message`` its text, ``status`` the HTTP status.
    ``response`` has the shape boto3 gives ``ClientError.response``: ``Error`` (``Code``,
    ``Message``), ``ResponseMetadata`` (``RequestId`` when sent, ``HTTPStatusCode``,
    ``HTTPHeaders`` with lower-case names, ``RetryAttempts``) and, for an error the
    service model declares, its members at the top level (``Message``).
    """

    def __init__(self, operation, code, message, status, request_id=None, metadata=None,
                 modeled=None):
        self.operation = operation
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
        if metadata is None:  # no response headers at hand (e.g. a credentials endpoint)
            metadata = {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0}
            if request_id:
                metadata["RequestId"] = request_id
        self.response = {"Error": {"Code": code, "Message": message},
                         "ResponseMetadata": metadata}
        if modeled:
            for name in modeled:
                self.response[name] = modeled[name]
        super().__init__(
            "An error occurred (%s) when calling the %s operation: %s"
            % (code, operation, message),
        )


class TransportError(EdgecoreError):
    """The request did not complete: connection refused or reset, timeout, TLS failure."""


class ChecksumMismatch(EdgecoreError):
    """An artifact's digest differs from the one its deployment declared."""

    def __init__(self, algorithm, expected, actual, bytes_read):
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual
        self.bytes_read = bytes_read
        super().__init__(
            "%s checksum mismatch: expected %s, got %s after %d bytes"
            % (algorithm, expected, actual, bytes_read),
        )


class StreamTooLong(EdgecoreError):
    """The artifact is longer than its declared size (``limit=``); reading stopped."""

    def __init__(self, operation, limit, bytes_read):
        self.operation = operation
        self.limit = limit
        self.bytes_read = bytes_read
        super().__init__(
            "%s: stream longer than its declared size: expected at most %d bytes, got %d or more"
            % (operation, limit, bytes_read)
        )


def short_repr(value, limit=60):
    """``repr(value)`` cut to ``limit`` characters, for messages; never raises.

    ``repr`` itself can fail: CPython refuses to print ints over 4300 digits
    (ValueError), and any object's ``__repr__`` may raise. Such values are named by
    their type (an int by its size) so a validation error is never replaced by an
    untyped one.
    """
    try:
        text = repr(value)
    except Exception:
        if isinstance(value, int):
            try:
                return "<int of %d bits>" % value.bit_length()
            except Exception:  # a runtime without int.bit_length
                return "<int>"
        return "<%s>" % type(value).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
