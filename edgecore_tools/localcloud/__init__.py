"""The local cloud: the fleet server (``edgecore_fleet``) embedded, for tests and the demo.

- cloud.LocalCloud: the fleet server's WSGI app on an in-process server with its SQLite
  store, moto's S3 and one device with a key; test hooks (clock, faults, request log).
- s3.MotoS3: moto's server in a subprocess with signature checking on.
- iot: a local AWS IoT credentials provider (mutual TLS) minting keys of a LocalCloud.
- admin: add-device, create-key, deploy (direct deployments) on the fleet store.
- ``python -m edgecore_tools.localcloud``: admin CLI (serve, add-device, create-key,
  deploy, heartbeats, results, provision-thing).
"""

__all__ = ["LocalCloud", "MotoS3"]


def __getattr__(name):
    # Lazy: the CLI (``python -m``) must be able to say which extra is missing before
    # anything imports the fleet server's dependencies.
    if name == "LocalCloud":
        from .cloud import LocalCloud

        return LocalCloud
    if name == "MotoS3":
        from .s3 import MotoS3

        return MotoS3
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
