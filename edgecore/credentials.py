"""AWS credentials as a value: access key, secret key, optional session token and expiry.

The secret parts never appear in ``repr()`` or ``str()``. Where credentials come from is
the ports' business (environment, files, the AWS IoT credentials provider, the container
endpoint, STS); what those answers mean and when to refresh is ``edgecore.credsource``.
"""


class Credentials:
    """Static AWS credentials. ``expiration`` is epoch seconds or None (never expires)."""

    def __init__(self, access_key, secret_key, session_token=None, expiration=None):
        if not isinstance(access_key, str) or not access_key:
            raise ValueError("Credentials: access_key must be a non-empty string")
        if not isinstance(secret_key, str) or not secret_key:
            raise ValueError("Credentials: secret_key must be a non-empty string")
        if session_token is not None and (not isinstance(session_token, str) or not session_token):
            raise ValueError("Credentials: session_token must be a non-empty string or None")
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.expiration = expiration

    def expired(self, now, margin=0):
        """True when the credentials expire within ``margin`` seconds of ``now``."""
        return self.expiration is not None and now + margin >= self.expiration

    def __repr__(self):
        return "Credentials(access_key=%r, secret_key=<redacted>, session_token=%s)" % (
            self.access_key,
            "<redacted>" if self.session_token else "None",
        )

    __str__ = __repr__

    def __eq__(self, other):
        return (
            isinstance(other, Credentials)
            and self.access_key == other.access_key
            and self.secret_key == other.secret_key
            and self.session_token == other.session_token
        )

    def __ne__(self, other):
        return not self.__eq__(other)
