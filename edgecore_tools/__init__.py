"""CPython-only tools for edgecore: the local cloud stand-in, the demo, the CLI.

Nothing here is imported by the portable core (``edgecore/``) and nothing here is ever
frozen into MicroPython firmware; these modules may use the standard library freely
and third-party packages (botocore, boto3, moto).
"""
