"""Local stand-in for the cloud side of SageMaker Edge Manager (CPython only).

- server.EdgeServer: POST /GetDeployments, /SendHeartbeat, /GetDeviceRegistration,
  rest-json as AWS, every request's SigV4 signature checked with botocore's signer.
- db.FleetDB: devices, keys, deployments, heartbeats, results in SQLite.
- s3.MotoS3: moto's server in a subprocess with signature checking on.
- cloud.LocalCloud: all of the above plus one device, for tests and the demo.
- ``python -m edgecore_tools.localcloud``: admin CLI (serve, add-device, create-key,
  deploy, heartbeats, results).
"""

from .cloud import LocalCloud
from .s3 import MotoS3

__all__ = ["LocalCloud", "MotoS3"]
