"""The local cloud: the fleet server (``edgecore_fleet``) embedded, for tests and the demo.

- cloud.LocalCloud: the fleet server's WSGI app on an in-process server with its SQLite
  store, moto's S3 and one device with a key; test hooks (clock, faults, request log).
- s3.MotoS3: moto's server in a subprocess with signature checking on.
- iot: a local AWS IoT credentials provider (mutual TLS) minting keys of a LocalCloud.
- admin: add-device, create-key, deploy (direct deployments) on the fleet store.
- ``python -m edgecore_tools.localcloud``: admin CLI (serve, add-device, create-key,
  deploy, heartbeats, results, provision-thing).
"""

from .cloud import LocalCloud
from .s3 import MotoS3

__all__ = ["LocalCloud", "MotoS3"]
