"""The AWS SDKs' shared configuration (environment + ``~/.aws`` files), read as botocore does.

``SharedConfig(environ=None, profile=None)`` reads, once, the config file
(``AWS_CONFIG_FILE`` or ``~/.aws/config``: ``[default]``, ``[profile NAME]``,
``[services NAME]``, indented sub-sections) and the shared credentials file
(``AWS_SHARED_CREDENTIALS_FILE`` or ``~/.aws/credentials``: ``[NAME]``), merges each
profile as botocore's ``Session.full_config`` does (the credentials file's keys over
the config file's), and answers:

- ``profile_name``: the explicit ``profile``, else ``AWS_DEFAULT_PROFILE``, else
  ``AWS_PROFILE``, else ``default``; ``profile()`` its merged keys (an explicitly named
  profile that exists in neither file raises ``ProfileNotFound``, as botocore does);
- ``region()``: ``AWS_DEFAULT_REGION``, then ``AWS_REGION``, then the profile's
  ``region`` (botocore reads no ``AWS_REGION``; the other AWS SDKs, Lambda and AWS IoT
  Greengrass set it, so edgecore reads it after botocore's own variable);
- ``endpoint_url(service)``: ``AWS_ENDPOINT_URL_<SERVICE>`` (``SAGEMAKER_EDGE``, ``S3``,
  ``STS``), then ``AWS_ENDPOINT_URL``, then the profile's ``services`` section for the
  service, then the profile's ``endpoint_url``; none of them when
  ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`` (or the profile's
  ``ignore_configured_endpoint_urls``) is true;
- ``use_fips_endpoint()`` / ``use_dualstack_endpoint(service)``: ``AWS_USE_FIPS_ENDPOINT``
  / ``AWS_USE_DUALSTACK_ENDPOINT``, else the profile's key (for S3 also its ``s3``
  sub-section's ``use_dualstack_endpoint``); "true" in any case is true, anything else
  false, as botocore's ``ensure_boolean``.

``client_settings(...)`` and ``agent_endpoints(...)`` apply the rule every SDK follows:
an explicit argument (or an agent config key) always wins over all of the above.

Errors (``AwsConfigError``) name the file, the line and the expected form; a file's
content is never quoted (it may hold keys). CPython only (``configparser``, ``shlex``).
"""

import os

from edgecore.errors import EdgecoreError

# configparser, re and shlex are imported where needed: a client that finds no file and
# no "$" in a path (the usual device) never pays their import time at start-up.

SERVICE_IDS = {"sagemaker-edge": "sagemaker_edge", "s3": "s3", "sts": "sts"}


class AwsConfigError(EdgecoreError):
    """A shared config or credentials file is unreadable or malformed."""

    def __init__(self, path, where, detail):
        self.path = path
        self.where = where
        self.detail = detail
        super().__init__("AWS config file %s: %s: %s" % (path, where, detail))


class ProfileNotFound(AwsConfigError):
    """The named profile is in neither file (botocore's ProfileNotFound)."""

    def __init__(self, profile, paths, known):
        self.profile = profile
        self.path = " or ".join(paths)
        self.where = "profile"
        self.detail = "profile [%s] not found (profiles there: %s)" % (
            profile, ", ".join(sorted(known)) or "none")
        EdgecoreError.__init__(self, "AWS config files %s: %s" % (self.path, self.detail))


def ensure_boolean(value):
    """botocore's rule: a bool as it is; a string is true when it is "true" in any case."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.lower() == "true"


def expand_path(path, environ):
    """``$VAR`` / ``${VAR}`` and ``~`` expanded against ``environ``, as botocore expands
    file paths (``os.path.expandvars`` then ``expanduser``; unknown variables stay)."""

    if "$" in path:
        import re

        def var(m):
            name = m.group(1).strip("{}")
            return environ.get(name, m.group(0))

        path = re.sub(r"\$(\w+|\{[^}]*\})", var, path, flags=re.ASCII)
    if (path == "~" or path.startswith("~/")) and environ.get("HOME"):
        path = environ["HOME"] + path[1:]
    return os.path.expanduser(path)


def file_path(environ, variable, default):
    """The path of a shared file: ``variable`` from ``environ`` or ``~/.aws/<default>``."""
    path = environ.get(variable)
    if path:
        return expand_path(path, environ)
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".aws", default)


def read_ini(path):
    """``{section: {key: value or {sub-key: value}}}`` of an AWS INI file, or None when
    it does not exist. Values starting on the next line (indented ``key = value``
    lines) become a sub-section, as in botocore."""
    if not os.path.lexists(path):
        return None
    import configparser

    parser = configparser.RawConfigParser()
    problem = None
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        problem = ("file", "is a directory")
    except (OSError, UnicodeDecodeError) as exc:
        problem = ("file", "cannot read: %s" % type(exc).__name__)
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        problem = ("file" if line is None else "line %d" % line,
                   "not an INI file of [section] headers and key = value lines (%s)"
                   % type(exc).__name__)
    if problem is not None:
        # Raised outside the except block: the parser's message quotes the offending
        # line (maybe a key), and must not even be kept as __context__.
        raise AwsConfigError(path, problem[0], problem[1])
    out = {}
    for section in parser.sections():
        values = {}
        for key, value in parser.items(section):
            if value.startswith("\n"):
                nested = {}
                for line in value.splitlines():
                    line = line.strip()
                    if line:
                        name, sep, sub = line.partition("=")
                        if not sep:
                            raise AwsConfigError(path, "[%s] %s" % (section, key),
                                                 "a sub-section line without '='")
                        nested[name.strip()] = sub.strip()
                value = nested
            values[key] = value
        out[section] = values
    return out


def profile_section_name(section):
    """NAME of a ``[profile NAME]`` / ``[services NAME]`` section (shlex-split as botocore
    does), else None."""
    import shlex

    try:
        parts = shlex.split(section)
    except ValueError:
        return None
    return parts[1] if len(parts) == 2 else None


class SharedConfig:
    """One read of the shared files for one profile; see the module doc."""

    def __init__(self, environ=None, profile=None):
        self.environ = os.environ if environ is None else environ
        env = self.environ
        self.explicit_profile = profile is not None
        if profile is None:
            profile = env.get("AWS_DEFAULT_PROFILE") or env.get("AWS_PROFILE") or None
        self.named_profile = profile is not None
        self.profile_name = profile or "default"
        self.config_path = file_path(env, "AWS_CONFIG_FILE", "config")
        self.credentials_path = file_path(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials")
        config = read_ini(self.config_path) or {}
        self.credentials_file = read_ini(self.credentials_path)
        self.config_profiles = {}
        self.services = {}
        for section, values in config.items():
            if section.startswith("profile"):
                name = profile_section_name(section)
                if name is not None:
                    self.config_profiles[name] = values
            elif section.startswith("services"):
                name = profile_section_name(section)
                if name is not None:
                    self.services[name] = values
            elif section == "default":
                self.config_profiles["default"] = values
        self.profiles = {}
        for name, values in self.config_profiles.items():
            self.profiles[name] = dict(values)
        for name, values in (self.credentials_file or {}).items():
            self.profiles.setdefault(name, {}).update(values)

    def __repr__(self):
        return "SharedConfig(profile=%r, config=%r, credentials=%r)" % (
            self.profile_name, self.config_path, self.credentials_path)

    def profile(self, name=None):
        """The merged keys of profile ``name`` (default: the active one)."""
        if name is None:
            name = self.profile_name
            if name not in self.profiles and not self.named_profile:
                return {}
        if name not in self.profiles:
            raise ProfileNotFound(name, (self.config_path, self.credentials_path), self.profiles)
        return self.profiles[name]

    def _env(self, name):
        value = self.environ.get(name)
        return value if value else None

    def region(self):
        region = self._env("AWS_DEFAULT_REGION") or self._env("AWS_REGION")
        if region is None:
            region = self.profile().get("region") or None
        return region.strip() if isinstance(region, str) else None

    def ignore_configured_endpoint_urls(self):
        # A variable that is set decides, even when empty (botocore: "" is false).
        value = self.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        if value is None:
            value = self.profile().get("ignore_configured_endpoint_urls")
        return ensure_boolean(value)

    def endpoint_url(self, service):
        """The configured endpoint URL for ``service`` (sagemaker-edge, s3, sts) or None."""
        if self.ignore_configured_endpoint_urls():
            return None
        sid = SERVICE_IDS.get(service, service.replace("-", "_"))
        url = self._env("AWS_ENDPOINT_URL_" + sid.upper()) or self._env("AWS_ENDPOINT_URL")
        if url:
            return url
        profile = self.profile()
        services_name = profile.get("services")
        if isinstance(services_name, str) and services_name:
            section = self.services.get(services_name)
            if section is None:
                raise AwsConfigError(
                    self.config_path, "profile %s" % self.profile_name,
                    'services = %s names no [services %s] section' % (
                        services_name, services_name))
            sub = section.get(sid)
            if isinstance(sub, dict) and sub.get("endpoint_url"):
                return sub["endpoint_url"]
        url = profile.get("endpoint_url")
        return url if isinstance(url, str) and url else None

    def _flag(self, variable, key):
        value = self.environ.get(variable)  # set, even empty (false), beats the file
        if value is None:
            value = self.profile().get(key)
        return ensure_boolean(value)

    def use_fips_endpoint(self):
        return self._flag("AWS_USE_FIPS_ENDPOINT", "use_fips_endpoint")

    def use_dualstack_endpoint(self, service="sagemaker-edge"):
        if service == "s3":
            nested = self.profile().get("s3")
            if isinstance(nested, dict) and nested.get("use_dualstack_endpoint") in (
                    "True", "true"):
                return True
        return self._flag("AWS_USE_DUALSTACK_ENDPOINT", "use_dualstack_endpoint")


def client_settings(service="sagemaker-edge", environ=None, profile=None, region=None,
                    endpoint_url=None, use_fips_endpoint=None, use_dualstack_endpoint=None,
                    shared=None):
    """``{"region", "endpoint_url", "use_fips_endpoint", "use_dualstack_endpoint"}`` for a
    client of ``service``: each explicit argument as given, the rest from the shared
    configuration (``shared``, or a fresh ``SharedConfig(environ, profile)``)."""
    if shared is None:
        shared = SharedConfig(environ, profile)
    return {
        "region": region if region is not None else shared.region(),
        "endpoint_url": endpoint_url if endpoint_url is not None else shared.endpoint_url(
            service),
        "use_fips_endpoint": (use_fips_endpoint if use_fips_endpoint is not None
                              else shared.use_fips_endpoint()),
        "use_dualstack_endpoint": (use_dualstack_endpoint if use_dualstack_endpoint is not None
                                   else shared.use_dualstack_endpoint(service)),
    }


def client_defaults(service, missing, region=None, environ=None, profile=None):
    """``edgecore.Client``'s defaults (the port hook): each name of ``missing`` resolved as
    boto3 resolves it; ``credentials`` is botocore's chain as a provider (raises
    ``NoCredentialsError`` when there is none, ``CredentialsConfigError`` for a malformed
    source)."""
    shared = SharedConfig(environ, profile)
    out = {}
    if "region" in missing:
        region = shared.region()
        out["region"] = region
    if "endpoint_url" in missing:
        out["endpoint_url"] = shared.endpoint_url(service)
    if "use_fips_endpoint" in missing:
        out["use_fips_endpoint"] = shared.use_fips_endpoint()
    if "use_dualstack_endpoint" in missing:
        out["use_dualstack_endpoint"] = shared.use_dualstack_endpoint(service)
    if "credentials" in missing:
        from edgecore_ports.credentials import default_provider

        out["credentials"] = default_provider(shared.environ, profile, region, shared=shared)
    return out


def agent_endpoints(config, environ=None):
    """The agent's endpoints and flags: ``{"endpoint_url", "s3_endpoint_url",
    "use_fips_endpoint", "use_dualstack_endpoint", "s3_use_dualstack_endpoint"}``.

    ``config``'s ``endpoint_url`` / ``s3_endpoint_url`` (and ``use_fips_endpoint`` /
    ``use_dualstack_endpoint`` when present) win; otherwise the shared configuration
    decides, for ``config["profile"]`` when the agent names one.
    """
    shared = SharedConfig(environ, config.get("profile"))
    edge = client_settings("sagemaker-edge", shared=shared, region=config.get("region"),
                           endpoint_url=config.get("endpoint_url"),
                           use_fips_endpoint=config.get("use_fips_endpoint"),
                           use_dualstack_endpoint=config.get("use_dualstack_endpoint"))
    s3 = client_settings("s3", shared=shared, region=config.get("region"),
                         endpoint_url=config.get("s3_endpoint_url"),
                         use_fips_endpoint=config.get("use_fips_endpoint"),
                         use_dualstack_endpoint=config.get("use_dualstack_endpoint"))
    return {
        "endpoint_url": edge["endpoint_url"],
        "s3_endpoint_url": s3["endpoint_url"],
        "use_fips_endpoint": edge["use_fips_endpoint"],
        "use_dualstack_endpoint": edge["use_dualstack_endpoint"],
        "s3_use_dualstack_endpoint": s3["use_dualstack_endpoint"],
    }
