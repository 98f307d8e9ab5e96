"""Errors, grouped by what the caller can do about them.

::

    AutoscalerError
    ├── ConfigError                   a user's file or flag is wrong: report it, exit non-zero
    └── ServiceError                  GameLift Streams (or its stand-in) said no
        ├── RetryableServiceError     try again on a later tick (``retry_after_s`` hints when)
        │   ├── ThrottledError            ThrottlingException (429)
        │   ├── ServiceUnavailableError   InternalServerException (500), 5xx, timeouts
        │   └── ConflictError             ConflictException (409): the resource is busy
        └── PermanentServiceError     retrying the same call will not help: report it
            ├── ValidationError           ValidationException (400)
            ├── NotFoundError             ResourceNotFoundException (404)
            ├── AccessDeniedError         AccessDeniedException (403)
            └── QuotaExceededError        ServiceQuotaExceededException (402)

``code`` is the AWS error type name (``x-amzn-ErrorType``) so adapters map both ways by name.
"""

from __future__ import annotations


class AutoscalerError(Exception):
    """Base of every error the package raises on purpose."""


class ConfigError(AutoscalerError):
    """A user's configuration is invalid; ``problems`` lists every error found, not just one."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, list[str]], dict[str, object]]:
        # Pickled by its own arguments (Exception pickles ``args``, the joined message, which
        # this __init__ cannot take): a worker process's error reaches its parent intact.
        return type(self), (self.source, self.problems), dict(self.__dict__)


class ServiceError(AutoscalerError):
    code = "ServiceError"
    http_status = 500

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"{self.code}: {message}")

    def __reduce__(self) -> tuple[type[ServiceError], tuple[str], dict[str, object]]:
        # As ConfigError: rebuilt from ``message``, not from the prefixed text in ``args``
        # (which would prefix the code twice); instance attributes such as a retry hint kept.
        return type(self), (self.message,), dict(self.__dict__)


class RetryableServiceError(ServiceError):
    retry_after_s: float = 1.0


class ThrottledError(RetryableServiceError):
    code = "ThrottlingException"
    http_status = 429


class ServiceUnavailableError(RetryableServiceError):
    code = "InternalServerException"
    http_status = 500


class ConflictError(RetryableServiceError):
    code = "ConflictException"
    http_status = 409


class PermanentServiceError(ServiceError):
    pass


class ValidationError(PermanentServiceError):
    code = "ValidationException"
    http_status = 400


class NotFoundError(PermanentServiceError):
    code = "ResourceNotFoundException"
    http_status = 404


class AccessDeniedError(PermanentServiceError):
    code = "AccessDeniedException"
    http_status = 403


class QuotaExceededError(PermanentServiceError):
    code = "ServiceQuotaExceededException"
    http_status = 402


class FencedError(PermanentServiceError):
    """A write refused in this process, before its request left: the replica no longer holds
    the lease (a retry of the SDK's after the lease's deadline). Never an AWS answer."""

    code = "NotLeader"
    http_status = 409


SERVICE_ERRORS_BY_CODE: dict[str, type[ServiceError]] = {
    cls.code: cls
    for cls in (
        ThrottledError,
        ServiceUnavailableError,
        ConflictError,
        ValidationError,
        NotFoundError,
        AccessDeniedError,
        QuotaExceededError,
    )
}


def service_error_from_code(code: str, message: str) -> ServiceError:
    """The domain error for an AWS error code; unknown codes are treated as retryable 5xx."""
    cls = SERVICE_ERRORS_BY_CODE.get(code, ServiceUnavailableError)
    return cls(message)
