# Runs under MicroPython too
"""edgecore.errors: ClientError's boto3-shaped response (plain: pytest and MicroPython).

Responses parsed from the wire are cross-checked with boto3 in test_wire_botocore.py.
"""

from edgecore.errors import ClientError, EdgecoreError


def test_client_error_without_response_headers_has_boto3s_keys():
    # What a credentials endpoint error builds: no headers at hand.
    err = ClientError("AssumeRoleWithCertificate", "Forbidden", "no", 403, "rid")
    assert isinstance(err, EdgecoreError)
    assert err.response == {
        "Error": {"Code": "Forbidden", "Message": "no"},
        "ResponseMetadata": {"RequestId": "rid", "HTTPStatusCode": 403, "HTTPHeaders": {},
                             "RetryAttempts": 0},
    }
    assert str(err) == ("An error occurred (Forbidden) when calling the "
                        "AssumeRoleWithCertificate operation: no")
    assert "RequestId" not in ClientError("Op", "C", "m", 500).response["ResponseMetadata"]


def test_client_error_with_metadata_and_modelled_members():
    meta = {"HTTPStatusCode": 500, "HTTPHeaders": {"a": "b"}, "RetryAttempts": 0}
    err = ClientError("GetDeployments", "InternalServiceException", "m", 500, None, meta,
                      {"Message": "m"})
    assert err.response["ResponseMetadata"] is meta
    assert err.response["Message"] == "m"
    assert (err.code, err.message, err.status, err.request_id) == (
        "InternalServiceException", "m", 500, None)
