"""The S3 stand-in: moto's server in a subprocess, with SigV4 signature checking on.

moto counts requests and only starts authenticating once INITIAL_NO_AUTH_ACTION_COUNT
of them have been served (moto/core/authorization.py); from then on every request's
signature is recomputed with the stored secret and a mismatch is SignatureDoesNotMatch
(403). So the stand-in is started with the count equal to the number of bootstrap calls
(create an admin IAM user, give it an allow-all inline policy, create its access key),
made here without valid credentials; everything after that needs a real key.
"""

import json
import os
import select
import subprocess
import sys
import threading
import uuid

ADMIN_USER = "edgecore-admin"
CAPTURE_PREFIX = "captures/"


def device_policy(capture_bucket=None):
    """A device's S3 permissions: read the models; with `capture_bucket`, also write its
    captured data under ``<capture_bucket>/captures/`` (the agent's capture_s3_uri), and
    nowhere else (the bucket is named: an IAM ``*`` would also match slashes)."""
    statements = [
        # ListBucket too: without it S3 answers 403 rather than 404 for a missing key.
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"},
    ]
    if capture_bucket is not None:
        statements.append({"Effect": "Allow", "Action": ["s3:PutObject"], "Resource":
                           "arn:aws:s3:::%s/%s*" % (capture_bucket, CAPTURE_PREFIX)})
    return {"Version": "2012-10-17", "Statement": statements}
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
# CreateUser, PutUserPolicy, CreateAccessKey: each one is one counted request.
BOOTSTRAP_CALLS = 3
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_session = None
_session_lock = threading.Lock()


def _client(service, endpoint_url, region, access_key, secret_key, session_token=None):
    """A boto3 client; one shared session, so service models are loaded only once."""
    global _session
    import boto3
    from botocore.config import Config

    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client(
            service,
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
        )


class MotoS3:
    """A running moto server. Attributes: endpoint_url, region, admin_access_key."""

    def __init__(self, proc, endpoint_url, region):
        self._proc = proc
        self.endpoint_url = endpoint_url
        self.region = region
        self.admin_access_key = None
        self._admin_secret = None
        self._clients = {}

    @classmethod
    def start(cls, region="us-east-1", timeout=None, port=0):
        """Start moto on 127.0.0.1:<port> (0: a free one), bootstrap the admin key.

        ``timeout`` defaults to $EDGECORE_MOTO_START_TIMEOUT or 60 s (emulated ARM runs
        need more).
        """
        if timeout is None:
            timeout = float(os.environ.get("EDGECORE_MOTO_START_TIMEOUT", "60"))
        env = dict(os.environ)
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(BOOTSTRAP_CALLS)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgecore_tools.localcloud._moto_main", str(int(port))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline() if ready else b""
            if not line:
                raise RuntimeError("moto server did not start within %ss" % timeout)
            port = json.loads(line.decode("ascii"))["port"]
            s3 = cls(proc, "http://127.0.0.1:%d" % port, region)
            s3._bootstrap()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return s3

    @classmethod
    def attach(cls, endpoint_url, region, admin_access_key, admin_secret_key):
        """A handle on a moto server started elsewhere (e.g. by `serve`), no process."""
        s3 = cls(None, endpoint_url, region)
        s3.admin_access_key, s3._admin_secret = admin_access_key, admin_secret_key
        return s3

    def connection_info(self):
        """What `attach` needs (includes the admin secret: keep it local)."""
        return {
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "admin_access_key": self.admin_access_key,
            "admin_secret_key": self._admin_secret,
        }

    def _bootstrap(self):
        # Unauthenticated on purpose: these are the INITIAL_NO_AUTH_ACTION_COUNT calls.
        iam = _client("iam", self.endpoint_url, "us-east-1", "bootstrap", "bootstrap")
        iam.create_user(UserName=ADMIN_USER)
        iam.put_user_policy(
            UserName=ADMIN_USER, PolicyName="admin", PolicyDocument=json.dumps(ADMIN_POLICY)
        )
        key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
        self.admin_access_key = key["AccessKeyId"]
        self._admin_secret = key["SecretAccessKey"]

    def client(self, service="s3", access_key=None, secret_key=None, session_token=None):
        """A boto3 client for this server (admin credentials unless others are given)."""
        if access_key is None:
            access_key, secret_key = self.admin_access_key, self._admin_secret
        region = "us-east-1" if service in ("iam", "sts") else self.region
        cache_key = (service, access_key, secret_key, session_token)
        client = self._clients.get(cache_key)
        if client is None:
            client = _client(
                service, self.endpoint_url, region, access_key, secret_key, session_token
            )
            self._clients[cache_key] = client
        return client

    def fleet_client(self):
        """The fleet server's S3 client on this server (admin key, edgecore's signer)."""
        from edgecore_fleet.s3 import S3Client

        return S3Client(self.region, self.admin_access_key, self._admin_secret,
                        endpoint_url=self.endpoint_url, style="path")

    def create_device_key(self, user_name=None, capture_bucket=None):
        """A new IAM user allowed to read objects; returns (access_key, secret_key)."""
        user_name = user_name or "device-" + uuid.uuid4().hex[:12]
        iam = self.client("iam")
        iam.create_user(UserName=user_name)
        iam.put_user_policy(
            UserName=user_name, PolicyName="read-models",
            PolicyDocument=json.dumps(device_policy(capture_bucket))
        )
        key = iam.create_access_key(UserName=user_name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def create_temporary_key(self, role_name=None, duration=900, capture_bucket=None):
        """Temporary credentials (STS AssumeRole on a read-only role).

        Returns (access_key, secret_key, session_token, expiration_epoch). moto checks
        the token with the signature but does not expire it; the edge endpoint enforces
        the expiry it is given.
        """
        role_name = role_name or "device-role-" + uuid.uuid4().hex[:12]
        iam = self.client("iam")
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
            ],
        }
        role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(
            RoleName=role_name, PolicyName="read-models",
            PolicyDocument=json.dumps(device_policy(capture_bucket))
        )
        creds = self.client("sts").assume_role(
            RoleArn=role["Role"]["Arn"], RoleSessionName="device", DurationSeconds=duration
        )["Credentials"]
        return (
            creds["AccessKeyId"],
            creds["SecretAccessKey"],
            creds["SessionToken"],
            creds["Expiration"].timestamp(),
        )

    def ensure_bucket(self, bucket):
        from botocore.exceptions import ClientError

        s3 = self.client()
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
                raise
            if self.region == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(
                    Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.region}
                )

    def put_object(self, bucket, key, data):
        self.ensure_bucket(bucket)
        self.fleet_client().put(bucket, key, data)

    def captures(self, bucket, device=None, data=False):
        """The batches devices uploaded under ``<bucket>/captures/`` (the agent's
        ``capture_s3_uri``, keys ``captures/<fleet>/<device>/<handle>/<yyyy>/<mm>/<dd>/<hh>/
        <batch id>.jsonl``), oldest first: ``{"key", "bytes", "modified", "records"}``
        where each record is its ``eventMetadata`` (with ``captureData`` too when
        ``data``); ``device`` keeps that device's only."""
        s3 = self.client()
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=CAPTURE_PREFIX):
            for obj in page.get("Contents", []):
                parts = obj["Key"][len(CAPTURE_PREFIX):].split("/")
                if device is not None and (len(parts) < 3 or parts[1] != device):
                    continue
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                records = []
                for line in body.splitlines():
                    try:
                        rec = json.loads(line)
                        meta = dict(rec["eventMetadata"])
                    except (ValueError, KeyError, TypeError):
                        meta = {"unreadable": line[:80].decode("utf-8", "replace")}
                        rec = {}
                    if data and "captureData" in rec:
                        meta["captureData"] = rec["captureData"]
                    records.append(meta)
                out.append({"key": obj["Key"], "bytes": obj["Size"],
                            "modified": obj["LastModified"].timestamp(), "records": records})
        out.sort(key=lambda o: (o["modified"], o["key"]))
        return out

    def alive(self):
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout=10):
        """Close the server's stdin (it shuts down cleanly); kill it if it lingers."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
