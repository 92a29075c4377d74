"""Admin operations of the local cloud (used by its CLI, LocalCloud and the demo), on the
fleet server's store.

Names are checked against the device API model's own constraints (``edgecore.shapes``)
so the local cloud never hands a device something the real service could not send.
``deploy`` is a direct deployment (one device or a whole fleet, outside any plan);
rollouts with stages go through the control plane (``LocalCloud.sagemaker_client()``).
"""

import hashlib
import os
import re
import secrets
import shutil
import time
import uuid

from edgecore_fleet.errors import ApiError
from edgecore_fleet.validate import device_validator

POLICIES = ("ROLLBACK_ON_FAILURE", "DO_NOTHING")
_validator = device_validator()


class AdminError(Exception):
    """A bad admin request (bad name, unknown device...)."""


def _check_name(shape_name, what, value):
    try:
        _validator.validate(shape_name, value, what)
    except ApiError as exc:
        raise AdminError("%s %r: %s" % (what, value, exc.message)) from None


def add_device(db, name, fleet, registration="REGISTERED"):
    _check_name("DeviceName", "device name", name)
    _check_name("DeviceFleetName", "fleet name", fleet)
    db.add_device(name, fleet, registration)
    return {"DeviceName": name, "DeviceFleetName": fleet, "DeviceRegistration": registration}


def create_key(db, s3=None, device=None, temporary=False, expires_in=None, admin=False,
               capture_bucket=None):
    """Create an access key for the edge endpoint (and for S3 when `s3` is given).

    With `s3`, the key is made by moto's IAM (a read-only user, or with temporary=True an
    STS session with a token) so the same credentials sign both APIs, as on AWS. Without,
    a random key is stored for the fleet server only. expires_in (seconds) sets the
    expiry the endpoint enforces (ExpiredTokenException after it). A device key acts
    only for `device`; admin=True makes a control-plane key instead. capture_bucket: the
    S3 key may also write captured data under <capture_bucket>/captures/.
    Returns {access_key_id, secret_access_key, session_token, expiration}.
    """
    token = None
    expiration = None if expires_in is None else time.time() + expires_in
    if s3 is not None and temporary:
        akid, secret, token, moto_expiry = s3.create_temporary_key(
            capture_bucket=capture_bucket)
        expiration = moto_expiry if expiration is None else expiration
    elif s3 is not None:
        akid, secret = s3.create_device_key(capture_bucket=capture_bucket)
    else:
        akid = ("ASIA" if temporary else "AKIA") + secrets.token_hex(8).upper()
        secret = secrets.token_urlsafe(30)[:40]
        token = secrets.token_urlsafe(48) if temporary else None
    db.add_key(akid, secret, token, expiration, None if admin else device,
               role="admin" if admin else "device")
    return {
        "access_key_id": akid,
        "secret_access_key": secret,
        "session_token": token,
        "expiration": expiration,
    }


def upload(s3, bucket, key, data, model_name=None, model_version=None):
    """Put an artifact with the metadata the agent reads (x-amz-meta-model-name/-version:
    the Definitions of GetDeployments carry no name or version), signed by edgecore."""
    s3.ensure_bucket(bucket)
    metadata = {}
    if model_name is not None:
        metadata = {"model-name": model_name, "model-version": model_version}
    s3.fleet_client().put(bucket, key, data, metadata)


def deploy(db, s3, bucket, handle, model_name, model_version, path=None, data=None,
           device=None, fleet=None, policy="ROLLBACK_ON_FAILURE", undeploy=False, name=None,
           blob_dir=None, signing_key=None):
    """Create a one-model deployment for a device or a whole fleet.

    DEPLOY: uploads the file (`path`) or bytes (`data`) to s3://bucket/models/<handle>/
    <sha1>/<file name> with the object metadata model-name / model-version (the agent
    reports those in its heartbeats) and records its SHA1. UNDEPLOY (undeploy=True): no
    upload needed; the definition reuses the last known S3Url/Checksum of that handle.
    The deployment supersedes older active ones of the same target touching the same
    handle.
    blob_dir: keep a copy of the artifact there so `serve` can re-upload it after a
    restart (moto keeps objects in memory only). Returns the deployment as stored.
    signing_key: path of a PEM private key (Ed25519 or ECDSA P-256); the artifact's
    detached signature is uploaded too, as `<key>.sig` (see edgecore_ports.signing).
    """
    if (device is None) == (fleet is None):
        raise AdminError("deploy: give exactly one of device or fleet")
    if device is not None and db.device(device) is None:
        raise AdminError("deploy: unknown device %r (add-device first)" % device)
    if policy not in POLICIES:
        raise AdminError("deploy: policy must be one of %s" % ", ".join(POLICIES))
    _check_name("EntityName", "model handle", handle)
    _check_name("ModelName", "model name", model_name)
    _check_name("Version", "model version", model_version)
    name = name or "dep-" + uuid.uuid4().hex[:16]
    _check_name("EntityName", "deployment name", name)

    definition = {"ModelHandle": handle, "ModelName": model_name, "ModelVersion": model_version}
    if undeploy:
        definition["State"] = "UNDEPLOY"
        previous = _last_definition(db, handle, device, fleet)
        if previous is not None:
            definition["S3Url"] = previous["S3Url"]
            definition["Checksum"] = previous["Checksum"]
    else:
        if (path is None) == (data is None):
            raise AdminError("deploy: give exactly one of path or data")
        if path is not None:
            with open(path, "rb") as f:
                data = f.read()
            filename = os.path.basename(path)
        else:
            filename = "model.bin"
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "model.bin"
        sha1 = hashlib.sha1(data).hexdigest()
        key = "models/%s/%s/%s" % (handle, sha1, filename)
        upload(s3, bucket, key, data, model_name, model_version)
        sig = None
        if signing_key is not None:
            from edgecore_ports import signing
            from edgecore_tools.sign_artifact import load_private_key

            digest = hashlib.sha256(data).hexdigest()
            sig = signing.sign(load_private_key(signing_key), digest)
            s3.put_object(bucket, key + signing.SUFFIX, sig)
        definition["S3Url"] = "s3://%s/%s" % (bucket, key)
        definition["Checksum"] = {"Type": "SHA1", "Sum": sha1}
        definition["State"] = "DEPLOY"
        if blob_dir is not None:
            os.makedirs(blob_dir, exist_ok=True)
            blob = os.path.join(blob_dir, sha1)
            if path is not None:
                shutil.copyfile(path, blob)
            else:
                with open(blob, "wb") as f:
                    f.write(data)
            if sig is not None:  # re-uploaded next to the artifact by reupload_blobs
                with open(blob + ".sig", "wb") as f:
                    f.write(sig)
            definition["Blob"] = blob
    db.add_deployment(name, policy, [definition], device=device, fleet=fleet)
    return {
        "DeploymentName": name,
        "FailureHandlingPolicy": policy,
        "Device": device,
        "Fleet": fleet,
        "Definitions": [definition],
    }


def _last_definition(db, handle, device, fleet):
    for row in reversed(db.deployments()):
        if row["device"] == device and row["fleet"] == fleet:
            for d in row["definitions"]:
                if d["ModelHandle"] == handle and "S3Url" in d:
                    return d
    return None


def reupload_blobs(db, s3):
    """After a restart of the S3 stand-in: put every recorded artifact back."""
    count = 0
    for row in db.deployments(active_only=True):
        for d in row["definitions"]:
            blob = d.get("Blob")
            if blob and os.path.exists(blob):
                bucket, _, key = d["S3Url"][len("s3://"):].partition("/")
                with open(blob, "rb") as f:
                    upload(s3, bucket, key, f.read(), d["ModelName"], d["ModelVersion"])
                if os.path.exists(blob + ".sig"):
                    with open(blob + ".sig", "rb") as f:
                        s3.put_object(bucket, key + ".sig", f.read())
                count += 1
    return count
