"""The error every layer of the fleet server raises: an HTTP status, AWS's error code
and message. ``app`` turns it into AWS's wire shape for the protocol of the request."""


class ApiError(Exception):
    def __init__(self, status, code, message):
        Exception.__init__(self, "%s: %s" % (code, message))
        self.status = status
        self.code = code
        self.message = message


def validation(message):
    return ApiError(400, "ValidationException", message)


def not_found(message):
    # SageMaker's modeled "ResourceNotFound" (no "Exception" suffix), status 400.
    return ApiError(400, "ResourceNotFound", message)


def in_use(message):
    return ApiError(400, "ResourceInUse", message)


def access_denied(message):
    return ApiError(403, "AccessDeniedException", message)
