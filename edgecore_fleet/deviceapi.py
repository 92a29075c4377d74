"""The device API: GetDeployments, SendHeartbeat, GetDeviceRegistration (rest-json).

Requests are validated against ``edgecore.shapes`` (the constraints the device itself
checks) and answered as the service model says. A device key is scoped to its device:
any other DeviceName is AccessDeniedException, whatever the fleet, so a key issued to
device A can never read B's deployments or report for B.
"""

from edgecore import shapes

from .errors import access_denied, validation
from .validate import device_validator

DEFAULT_CACHE_TTL = "3600"
_validator = device_validator()


def authorize(operation, params, key):
    """Refuse a request whose key may not act for params' DeviceName."""
    if key.role != "device" or key.device is None or key.device != params["DeviceName"]:
        raise access_denied(
            "User: %s is not authorized to perform: sagemaker:%s on resource: device %s"
            % (key.access_key, operation, params["DeviceName"]))


def _registered(ctx, params):
    # authorize() made the key's device the one named; its row came with the key.
    device = ctx.verified.key.device_row
    if device is None or device["name"] != params["DeviceName"] or \
            device["fleet"] != params["DeviceFleetName"] or \
            device["registration"] != "REGISTERED":
        return None
    return device


def _require_registered(ctx, params):
    device = _registered(ctx, params)
    if device is None:
        raise validation("Device %s is not registered with device fleet %s."
                         % (params["DeviceName"], params["DeviceFleetName"]))
    return device


def wire_definition(stored):
    """The wire Definition: only the model's members (the store also keeps name/version)."""
    out = {"ModelHandle": stored["ModelHandle"]}
    if "S3Url" in stored:
        out["S3Url"] = stored["S3Url"]
        out["Checksum"] = {"Type": stored["Checksum"]["Type"], "Sum": stored["Checksum"]["Sum"]}
    out["State"] = stored["State"]
    return out


def get_deployments(ctx, params):
    device = _require_registered(ctx, params)
    return {"Deployments": [
        {"DeploymentName": d["name"], "Type": "Model", "FailureHandlingPolicy": d["policy"],
         "Definitions": [wire_definition(x) for x in d["definitions"]]}
        for d in ctx.store.deployments_for(device["name"], device["fleet"])]}


def send_heartbeat(ctx, params):
    device = _require_registered(ctx, params)
    ctx.store.add_heartbeat(device["name"], device["fleet"], params, received=ctx.now,
                            signer=ctx.verified.key.access_key)
    return None


def get_device_registration(ctx, params):
    registered = _registered(ctx, params) is not None
    return {"DeviceRegistration": "REGISTERED" if registered else "NOT_REGISTERED",
            "CacheTTL": ctx.cache_ttl}


HANDLERS = {
    "GetDeployments": get_deployments,
    "SendHeartbeat": send_heartbeat,
    "GetDeviceRegistration": get_device_registration,
}
ROUTES = dict((spec[1], name) for name, spec in shapes.OPERATIONS.items())


def handle(ctx, operation, params):
    """Validate, authorize and run one device operation; returns the result dict or None."""
    _validator.validate(shapes.OPERATIONS[operation][2], params)
    authorize(operation, params, ctx.verified.key)
    return HANDLERS[operation](ctx, params)
