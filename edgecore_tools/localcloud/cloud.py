"""LocalCloud: the fleet server embedded + moto S3 + one device, for tests and demos.

    cloud = LocalCloud.start(tmpdir)            # or start(tmpdir, s3=shared_moto)
    cloud.deploy(handle="m1", data=b"...", model_name="model-a", model_version="1.0")
    config = cloud.agent_config(model_dir, state_dir)
    ... run the agent ...
    cloud.heartbeats(); cloud.results(); cloud.stop()

The endpoint is ``edgecore_fleet`` itself (its WSGI app on an in-process waitress
server, its schema in a SQLite file in the work directory): the device API, the control
plane (``sagemaker_client()``: boto3 with this cloud's admin key), /healthz, /metrics and
the dashboard, exactly as ``edgecore-fleet serve`` runs them. What is added here are test
hooks: a shiftable clock, injected faults, the log of requests, and ``cross_check``
(a second, independent signature check on every request: the test suite passes
botocore's).
"""

import os
import threading
import time
import uuid

from edgecore_fleet.app import FleetApp
from edgecore_fleet.embedded import EmbeddedServer
from edgecore_fleet.store import Store

from . import admin
from .s3 import MotoS3


class Hooks:
    """The embedded endpoint's test hooks (``cloud.server``): clock, faults, requests."""

    def __init__(self, clock=None):
        self.clock = clock or time.time
        self.url = None
        self._faults = {}
        self._lock = threading.Lock()
        # Every request, in arrival order: {operation (or the path), request_id, status,
        # error (code or None), access_key_id (verified; for a rejected one: as named)}.
        self.requests = []

    def inject_fault(self, operation, status=500, code="InternalServiceException",
                     message="An internal failure occurred. Try your request again.", times=1):
        with self._lock:
            self._faults.setdefault(operation, []).extend([(status, code, message)] * times)

    def take_fault(self, operation):
        with self._lock:
            queue = self._faults.get(operation)
            return queue.pop(0) if queue else None

    def record(self, entry):
        with self._lock:
            self.requests.append(entry)


class LocalCloud:
    """A running local cloud. See the attributes set in __init__."""

    def __init__(self, workdir, db, app, http, hooks, s3, own_s3, bucket, region, device,
                 fleet, key, admin_key):
        self.workdir = str(workdir)
        self.db = db  # the fleet server's Store
        self.app = app  # its FleetApp
        self.http = http  # the EmbeddedServer
        self.server = hooks
        self.s3 = s3
        self._own_s3 = own_s3
        self.bucket = bucket
        self.region = region
        self.device_name = device
        self.fleet_name = fleet
        self.key = key  # {access_key_id, secret_access_key, session_token, expiration}
        self.admin_key = admin_key  # for the control plane

    @classmethod
    def start(cls, workdir, s3=None, region="us-west-2", device="test-device",
              fleet="test-fleet", bucket=None, clock=None, temporary_key=False,
              key_expires_in=None, cross_check=None, database=None):
        """Start the endpoint (thread, 127.0.0.1:<free port>) with its SQLite DB in
        `workdir`; start moto unless a running MotoS3 is passed (then it is shared and
        left running by stop()). Registers `device` in `fleet` with a key valid for
        both APIs (temporary_key=True: with a session token). cross_check: see
        FleetApp.extra_check. database: a SQLAlchemy/PostgreSQL URL instead of SQLite."""
        os.makedirs(str(workdir), exist_ok=True)
        own_s3 = s3 is None
        if own_s3:
            s3 = MotoS3.start(region=region)
        db = http = None
        try:
            db = Store.open(database or os.path.join(str(workdir), "localcloud.sqlite"))
            db.migrate()
            hooks = Hooks(clock)
            app = FleetApp(db, region=region, s3=s3.fleet_client(),
                           clock=lambda: hooks.clock(), date_header=True,
                           on_request=hooks.record, take_fault=hooks.take_fault,
                           extra_check=cross_check)
            db.clock = app.clock
            http = EmbeddedServer(app).start()
            hooks.url = http.url
            bucket = bucket or "edgecore-models-" + uuid.uuid4().hex[:12]
            s3.ensure_bucket(bucket)
            admin_key = admin.create_key(db, None, admin=True)
            key = None
            if device is not None:
                admin.add_device(db, device, fleet)
                key = admin.create_key(
                    db, s3, device=device, temporary=temporary_key, expires_in=key_expires_in,
                    capture_bucket=bucket,
                )
        except BaseException:
            if http is not None:
                http.stop()
            if db is not None:
                db.close()
            if own_s3:
                s3.stop()
            raise
        return cls(workdir, db, app, http, hooks, s3, own_s3, bucket, region, device, fleet,
                   key, admin_key)

    # ------------------------------------------------------------ endpoints/credentials
    @property
    def endpoint_url(self):
        return self.http.url

    @property
    def s3_endpoint_url(self):
        return self.s3.endpoint_url

    @property
    def capture_s3_uri(self):
        """Where this cloud's devices may upload captured data (``capture_s3_uri``)."""
        from .s3 import CAPTURE_PREFIX

        return "s3://%s/%s" % (self.bucket, CAPTURE_PREFIX)

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
        }
        if self.key is not None:
            config["credentials"] = self.credentials_config()
        config.update(extra)
        return config

    # ------------------------------------------------------------ admin
    def add_device(self, name, fleet=None):
        return admin.add_device(self.db, name, fleet or self.fleet_name)

    def set_registration(self, name, registration):
        """e.g. "DEREGISTERED": the device then gets ValidationException/NOT_REGISTERED."""
        self.db.set_registration(name, registration)

    def create_key(self, device=None, temporary=False, expires_in=None, s3=True):
        """Another key ({access_key_id, secret_access_key, session_token, expiration})
        scoped to `device` (default: this cloud's); s3=False: edge endpoint only."""
        return admin.create_key(
            self.db, self.s3 if s3 else None, device=device or self.device_name,
            temporary=temporary, expires_in=expires_in, capture_bucket=self.bucket,
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

    def upload(self, key, data, model_name=None, model_version=None):
        """Put an artifact into this cloud's bucket; returns its s3:// URL."""
        admin.upload(self.s3, self.bucket, key, data, model_name, model_version)
        return "s3://%s/%s" % (self.bucket, key)

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

    def captures(self, device=None, data=False):
        """What devices uploaded to ``capture_s3_uri`` (``MotoS3.captures``)."""
        return self.s3.captures(self.bucket, device, data)

    def heartbeats(self, device=None):
        """Received heartbeats, oldest first: [{id, device, fleet, received, body,
        access_key_id}] (access_key_id: the key that signed it)."""
        return self.db.heartbeats(device)

    def requests(self, operation=None):
        """Requests received, oldest first (of `operation`, e.g. "GetDeployments"):
        [{operation, request_id, status, error, access_key_id}], error the AWS error code
        or None, access_key_id the key that signed it (for a rejected request: the one it
        names)."""
        return [dict(r) for r in list(self.server.requests)
                if operation is None or r["operation"] == operation]

    def results(self, device=None):
        """DeploymentResults received: [{id, device, deployment, status, received, body}]."""
        return self.db.results(device)

    # ------------------------------------------------------------ test hooks
    def set_clock_offset(self, seconds):
        """Shift the endpoint's clock (skew checks and the Date header) by `seconds`."""
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

    def sagemaker_client(self, key=None):
        """A boto3 sagemaker (control plane) client on this endpoint, admin key."""
        from .s3 import _client

        key = key or self.admin_key
        return _client("sagemaker", self.endpoint_url, self.region, key["access_key_id"],
                       key["secret_access_key"], key.get("session_token"))

    def s3_client(self, key=None):
        """A boto3 S3 client on the stand-in with `key` (default: the device key)."""
        key = key or self.key
        return self.s3.client(
            "s3", key["access_key_id"], key["secret_access_key"], key.get("session_token")
        )

    # ------------------------------------------------------------ lifecycle
    def stop(self):
        self.http.stop()
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
