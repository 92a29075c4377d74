"""The SageMaker Edge Manager service model (sagemaker-edge 2020-09-23) as small tables.

Only what the wire layer needs: each shape's type and constraints, structure members in
the model's order (MicroPython dicts are unordered, so members are tuples), and one
hand-written checker per ``pattern`` in the model (MicroPython's ``re`` is minimal).

Table rows (index 0 is the kind):
    (STRUCTURE, members, required)     members: ((member name, shape name), ...) in model
                                       order; required: member names, in model order
    (LIST, member shape name)
    (STRING, min, max, pattern, enum)  min/max: length in characters (code points, as AWS
                                       counts them) or None; pattern: the model's literal
                                       pattern (a key of PATTERNS) or None; enum: tuple or None
    (DOUBLE,)
    (TIMESTAMP,)

Pattern semantics. Smithy (and so AWS's server-side validation) uses ECMA-262 regular
expressions and does NOT anchor them: a value is valid when the pattern matches
somewhere in it. botocore checks no patterns client-side; edgecore mirrors AWS:
- anchored patterns (``^...$``) must match the whole value, ``$`` meaning end of input
  (ECMA-262), so a trailing newline is rejected (Python's/Java's ``$`` would accept it);
  ``.`` does not match line terminators (\\n, \\r, U+2028, U+2029);
- the unanchored ``Version`` pattern ``[a-zA-Z0-9\\ \\_\\.]+`` is a search: a version is
  valid when it contains at least one letter, digit, space, ``_`` or ``.`` (length
  limits still apply). Full-matching it would be stricter than AWS.
"""

STRUCTURE = "structure"
LIST = "list"
STRING = "string"
DOUBLE = "double"
TIMESTAMP = "timestamp"


def _alnum(c):
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9")


def _lower_alnum(c):
    return ("a" <= c <= "z") or ("0" <= c <= "9")


def _alnum_or_slash(c):
    return c == "/" or _alnum(c)


def _hyphenated(s, head, tail):
    """``^H(-*T)*$``: first character H, then only '-' or T, not ending with '-'."""
    if not s or not head(s[0]):
        return False
    first = True
    for c in s:
        if first:
            first = False
        elif c != "-" and not tail(c):
            return False
    return s[-1] != "-"


def check_entity_name(s):
    """``^[a-zA-Z0-9](-*[a-zA-Z0-9])*$``"""
    return _hyphenated(s, _alnum, _alnum)


def check_dimension(s):
    """``^[a-zA-Z0-9](-*[a-zA-Z0-9\\/])*$``"""
    return _hyphenated(s, _alnum, _alnum_or_slash)


def check_checksum(s):
    """``^[a-z0-9](-*[a-z0-9])*$``"""
    return _hyphenated(s, _lower_alnum, _lower_alnum)


def check_device_name(s):
    """``^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$``: between two alphanumerics, hyphens then underscores."""
    if not s or not _alnum(s[0]):
        return False
    underscore = False  # an '_' was seen in the current separator run: no '-' may follow
    for c in s:
        if c == "-":
            if underscore:
                return False
        elif c == "_":
            underscore = True
        elif _alnum(c):
            underscore = False
        else:
            return False
    return _alnum(s[-1])


def check_s3_uri(s):
    """``^s3://([^/]+)/?(.*)$``: a non-empty bucket part (anything but '/'), then optionally
    '/' and a key without line terminators (``[^/]`` matches them, ``.`` does not)."""
    if not s.startswith("s3://") or len(s) == 5 or s[5] == "/":
        return False
    slash = s.find("/", 5)
    if slash < 0:
        return True
    for c in s[slash + 1 :]:
        if c == "\n" or c == "\r" or c == "\u2028" or c == "\u2029":
            return False
    return True


def search_version(s):
    """``[a-zA-Z0-9\\ \\_\\.]+`` unanchored: at least one such character somewhere."""
    return any(c == " " or c == "_" or c == "." or _alnum(c) for c in s)


# The model's literal pattern -> its checker.
PATTERNS = {
    "^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$": check_device_name,
    "^[a-zA-Z0-9](-*[a-zA-Z0-9])*$": check_entity_name,
    "^[a-zA-Z0-9](-*[a-zA-Z0-9\\/])*$": check_dimension,
    "^[a-z0-9](-*[a-z0-9])*$": check_checksum,
    "^s3://([^/]+)/?(.*)$": check_s3_uri,
    "[a-zA-Z0-9\\ \\_\\.]+": search_version,
}

# Each row is written with literals only (the kinds' and patterns' values, not the names
# above): a tuple of literals is a constant, which MicroPython keeps in flash when the
# module is frozen; one naming a variable is built in the heap at import (~1.3 KB of a
# board's 64 KiB). tests/test_shapes.py checks the literals against the names.
SHAPES = {
    "CacheTTLSeconds": ("string", 1, 1000, None, None),
    "Checksum": ("structure", (("Type", "ChecksumType"), ("Sum", "ChecksumString")), ()),
    "ChecksumString": ("string", 1, 63, "^[a-z0-9](-*[a-z0-9])*$", None),
    "ChecksumType": ("string", None, None, None, ("SHA1",)),
    "Definition": (
        "structure",
        (
            ("ModelHandle", "EntityName"),
            ("S3Url", "S3Uri"),
            ("Checksum", "Checksum"),
            ("State", "ModelState"),
        ),
        (),
    ),
    "Definitions": ("list", "Definition"),
    "DeploymentModel": (
        "structure",
        (
            ("ModelHandle", "EntityName"),
            ("ModelName", "ModelName"),
            ("ModelVersion", "Version"),
            ("DesiredState", "ModelState"),
            ("State", "ModelState"),
            ("Status", "DeploymentStatus"),
            ("StatusReason", "String"),
            ("RollbackFailureReason", "String"),
        ),
        (),
    ),
    "DeploymentModels": ("list", "DeploymentModel"),
    "DeploymentResult": (
        "structure",
        (
            ("DeploymentName", "EntityName"),
            ("DeploymentStatus", "EntityName"),
            ("DeploymentStatusMessage", "String"),
            ("DeploymentStartTime", "Timestamp"),
            ("DeploymentEndTime", "Timestamp"),
            ("DeploymentModels", "DeploymentModels"),
        ),
        (),
    ),
    "DeploymentStatus": ("string", None, None, None, ("SUCCESS", "FAIL")),
    "DeploymentType": ("string", None, None, None, ("Model",)),
    "DeviceFleetName": ("string", 1, 63, "^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$", None),
    "DeviceName": ("string", 1, 63, "^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$", None),
    "DeviceRegistration": ("string", 1, 1000, None, None),
    "Dimension": ("string", 1, 1000, "^[a-zA-Z0-9](-*[a-zA-Z0-9\\/])*$", None),
    "EdgeDeployment": (
        "structure",
        (
            ("DeploymentName", "EntityName"),
            ("Type", "DeploymentType"),
            ("FailureHandlingPolicy", "FailureHandlingPolicy"),
            ("Definitions", "Definitions"),
        ),
        (),
    ),
    "EdgeDeployments": ("list", "EdgeDeployment"),
    "EdgeMetric": (
        "structure",
        (
            ("Dimension", "Dimension"),
            ("MetricName", "Metric"),
            ("Value", "Value"),
            ("Timestamp", "Timestamp"),
        ),
        (),
    ),
    "EdgeMetrics": ("list", "EdgeMetric"),
    "EntityName": ("string", 1, 63, "^[a-zA-Z0-9](-*[a-zA-Z0-9])*$", None),
    "ErrorMessage": ("string", None, None, None, None),
    "FailureHandlingPolicy": ("string", None, None, None, ("ROLLBACK_ON_FAILURE", "DO_NOTHING")),
    "GetDeploymentsRequest": (
        "structure",
        (("DeviceName", "DeviceName"), ("DeviceFleetName", "DeviceFleetName")),
        ("DeviceName", "DeviceFleetName"),
    ),
    "GetDeploymentsResult": ("structure", (("Deployments", "EdgeDeployments"),), ()),
    "GetDeviceRegistrationRequest": (
        "structure",
        (("DeviceName", "DeviceName"), ("DeviceFleetName", "DeviceFleetName")),
        ("DeviceName", "DeviceFleetName"),
    ),
    "GetDeviceRegistrationResult": (
        "structure",
        (("DeviceRegistration", "DeviceRegistration"), ("CacheTTL", "CacheTTLSeconds")),
        (),
    ),
    "InternalServiceException": ("structure", (("Message", "ErrorMessage"),), ()),
    "Metric": ("string", 4, 100, "^[a-zA-Z0-9](-*[a-zA-Z0-9])*$", None),
    "Model": (
        "structure",
        (
            ("ModelName", "ModelName"),
            ("ModelVersion", "Version"),
            ("LatestSampleTime", "Timestamp"),
            ("LatestInference", "Timestamp"),
            ("ModelMetrics", "EdgeMetrics"),
        ),
        (),
    ),
    "ModelName": ("string", 4, 255, "^[a-zA-Z0-9](-*[a-zA-Z0-9])*$", None),
    "ModelState": ("string", None, None, None, ("DEPLOY", "UNDEPLOY")),
    "Models": ("list", "Model"),
    "S3Uri": ("string", None, 1024, "^s3://([^/]+)/?(.*)$", None),
    "SendHeartbeatRequest": (
        "structure",
        (
            ("AgentMetrics", "EdgeMetrics"),
            ("Models", "Models"),
            ("AgentVersion", "Version"),
            ("DeviceName", "DeviceName"),
            ("DeviceFleetName", "DeviceFleetName"),
            ("DeploymentResult", "DeploymentResult"),
        ),
        ("AgentVersion", "DeviceName", "DeviceFleetName"),
    ),
    "String": ("string", None, None, None, None),
    "Timestamp": ("timestamp",),
    "Value": ("double",),
    "Version": ("string", 1, 64, "[a-zA-Z0-9\\ \\_\\.]+", None),
}

# operation -> (HTTP method, request URI, input shape, output shape or None)
OPERATIONS = {
    "GetDeployments": ("POST", "/GetDeployments", "GetDeploymentsRequest", "GetDeploymentsResult"),
    "GetDeviceRegistration": (
        "POST",
        "/GetDeviceRegistration",
        "GetDeviceRegistrationRequest",
        "GetDeviceRegistrationResult",
    ),
    "SendHeartbeat": ("POST", "/SendHeartbeat", "SendHeartbeatRequest", None),
}


# The errors the model declares for every operation (by shape name = error code); none is
# marked retryable or throttling.
ERRORS = ("InternalServiceException",)


def member_names(structure):
    """The member names of a STRUCTURE row, in model order."""
    return tuple(m[0] for m in SHAPES[structure][1])
