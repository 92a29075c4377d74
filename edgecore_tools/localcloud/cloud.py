"""LocalCloud: the local Edge Manager endpoint + moto S3 + one device, for tests and demos.

    cloud = LocalCloud.start(tmpdir)            # or start(tmpdir, s3=shared_moto)
    cloud.deploy(handle="m1", data=b"...", model_name="model-a", model_version="1.0")
    config = cloud.agent_config(model_dir, state_dir)
    ... run the agent ...
    cloud.heartbeats(); cloud.results(); cloud.stop()
"""

import os
import uuid

from . import admin
from .db import FleetDB
from .s3 import MotoS3
from .server import EdgeServer


class LocalCloud:
    """A running local cloud. See the attributes set in __init__."""

    def __init__(self, workdir, db, server, s3, own_s3, bucket, region, device, fleet, key):
        self.workdir = str(workdir)
        self.db = db
        self.server = server
        self.s3 = s3
        self._own_s3 = own_s3
        self.bucket = bucket
        self.region = region
        self.device_name = device
        self.fleet_name = fleet
        self.key = key  # {access_key_id, secret_access_key, session_token, expiration}

    @classmethod
    def start(cls, workdir, s3=None, region="us-west-2", device="test-device",
              fleet="test-fleet", bucket=None, clock=None, temporary_key=False,
              key_expires_in=None):
        """Start the endpoint (thread, 127.0.0.1:<free port>) with its SQLite DB in
        `workdir`; start moto unless a running MotoS3 is passed (then it is shared and
        left running by stop()). Registers `device` in `fleet` with a key valid for
        both APIs (temporary_key=True: with a session token)."""
        os.makedirs(str(workdir), exist_ok=True)
        own_s3 = s3 is None
        if own_s3:
            s3 = MotoS3.start(region=region)
        db = server = None
        try:
            db = FleetDB(os.path.join(str(workdir), "localcloud.sqlite"))
            server = EdgeServer(db, clock=clock).start_background()
            bucket = bucket or "edgecore-models-" + uuid.uuid4().hex[:12]
            s3.ensure_bucket(bucket)
            key = None
            if device is not None:
                admin.add_device(db, device, fleet)
                key = admin.create_key(
                    db, s3, device=device, temporary=temporary_key, expires_in=key_expires_in
                )
        except BaseException:
            if server is not None:
                server.stop()
            if db is not None:
                db.close()
            if own_s3:
                s3.stop()
            raise
        return cls(workdir, db, server, s3, own_s3, bucket, region, device, fleet, key)

    # ------------------------------------------------------------ endpoints/credentials
    @property
    def endpoint_url(self):
        return self.server.url

    @property
    def s3_endpoint_url(self):
        return self.s3.endpoint_url

    @property
    def access_key(self):
        return self.key["access_key_id"]

    @property
    def secret_key(self):
        return self.key["secret_access_key"]

    @property
    def session_token(self):
        return self.key["session_token"]

    def credentials_config(self, key=None):
        """The agent config's "credentials" member for `key` (default: the device key)."""
        key = key or self.key
        out = {
            "access_key_id": key["access_key_id"],
            "secret_access_key": key["secret_access_key"],
        }
        if key.get("session_token"):
            out["session_token"] = key["session_token"]
        return out

    def agent_config(self, model_dir, state_dir, **extra):
        """An agent config dict (AGENT_IFACES.md keys) pointing at this cloud."""
        config = {
            "device_name": self.device_name,
            "fleet_name": self.fleet_name,
            "region": self.region,
            "model_dir": str(model_dir),
            "state_dir": str(state_dir),
            "endpoint_url": self.endpoint_url,
            "s3_endpoint_url": self.s3_endpoint_url,
            "s3_addressing_style": "path",
            "credentials": self.credentials_config(),
        }
        config.update(extra)
        return config

    # ------------------------------------------------------------ admin
    def add_device(self, name, fleet=None):
        return admin.add_device(self.db, name, fleet or self.fleet_name)

    def set_registration(self, name, registration):
        """e.g. "DEREGISTERED": the device then gets ValidationException/NOT_REGISTERED."""
        self.db.set_registration(name, registration)

    def create_key(self, device=None, temporary=False, expires_in=None, s3=True):
        """Another key ({access_key_id, secret_access_key, session_token, expiration});
        s3=False: valid for the edge endpoint only."""
        return admin.create_key(
            self.db, self.s3 if s3 else None, device=device or self.device_name,
            temporary=temporary, expires_in=expires_in,
        )

    def deploy(self, handle, model_name, model_version, path=None, data=None, device=None,
               fleet=None, policy="ROLLBACK_ON_FAILURE", undeploy=False, name=None,
               signing_key=None):
        """Create a deployment (default target: this cloud's device). See admin.deploy."""
        if device is None and fleet is None:
            device = self.device_name
        return admin.deploy(
            self.db, self.s3, self.bucket, handle, model_name, model_version, path=path,
            data=data, device=device, fleet=fleet, policy=policy, undeploy=undeploy, name=name,
            signing_key=signing_key,
        )

    def cancel_deployment(self, name):
        """Stop returning a deployment from GetDeployments."""
        self.db.cancel_deployment(name)

    def put_object(self, s3_url, data):
        """Overwrite an artifact (e.g. corrupt it: its recorded checksum stays)."""
        bucket, key = _split_s3_url(s3_url)
        self.s3.put_object(bucket, key, data)

    def delete_object(self, s3_url):
        """Remove an artifact (the device then gets 404 NoSuchKey)."""
        bucket, key = _split_s3_url(s3_url)
        self.s3.client().delete_object(Bucket=bucket, Key=key)

    def heartbeats(self, device=None):
        """Received heartbeats, oldest first: [{id, device, fleet, received, body,
        access_key_id}] (access_key_id: the key that signed it)."""
        return admin.heartbeats(self.db, device)

    def requests(self, operation=None):
        """Edge endpoint requests received, oldest first (of `operation`, e.g.
        "GetDeployments"): [{operation, request_id, status, error, access_key_id}], error
        the AWS error code or None, access_key_id the key that signed it (for a rejected
        request: the one it names)."""
        return [dict(r) for r in list(self.server.requests)
                if operation is None or r["operation"] == operation]

    def results(self, device=None):
        """DeploymentResults received: [{id, device, deployment, status, received, body}]."""
        return admin.results(self.db, device)

    # ------------------------------------------------------------ test hooks
    def set_clock_offset(self, seconds):
        """Shift the endpoint's clock (skew checks and the Date header) by `seconds`."""
        import time

        self.server.clock = lambda: time.time() + seconds

    def inject_fault(self, operation, status=500, code="InternalServiceException",
                     message="An internal failure occurred. Try your request again.", times=1):
        """Make the next `times` calls of `operation` fail (e.g. 400 ThrottlingException)."""
        self.server.inject_fault(operation, status, code, message, times)

    def edge_client(self, key=None):
        """A boto3 sagemaker-edge client on this endpoint (botocore signs)."""
        from .s3 import _client

        key = key or self.key
        return _client(
            "sagemaker-edge", self.endpoint_url, self.region, key["access_key_id"],
            key["secret_access_key"], key.get("session_token"),
        )

    def s3_client(self, key=None):
        """A boto3 S3 client on the stand-in with `key` (default: the device key)."""
        key = key or self.key
        return self.s3.client(
            "s3", key["access_key_id"], key["secret_access_key"], key.get("session_token")
        )

    # ------------------------------------------------------------ lifecycle
    def stop(self):
        self.server.stop()
        self.db.close()
        if self._own_s3:
            self.s3.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _split_s3_url(s3_url):
    if not s3_url.startswith("s3://"):
        raise ValueError("not an s3:// URL: %r" % s3_url)
    bucket, _, key = s3_url[len("s3://"):].partition("/")
    return bucket, key
