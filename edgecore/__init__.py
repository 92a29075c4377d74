"""edgecore: a device agent and minimal client for the AWS SageMaker Edge Manager device API.

This package is the portable core (CPython and MicroPython); it only re-exports.
"""

from edgecore.client import Client
from edgecore.credentials import Credentials

__version__ = "0.1.0"
__all__ = ["Client", "Credentials", "__version__"]
