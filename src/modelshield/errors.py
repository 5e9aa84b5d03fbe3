"""One exception tree for modelshield; every error knows how it is reported.

::

    ModelShieldError                    500  internal-error        exit 1
    ├── ConfigError                     500  configuration-error   exit 2
    │   └── PolicyError                                            (every error with its path)
    ├── RequestError                    400  bad-request           exit 2
    │   ├── MalformedRequest            400  malformed-request
    │   ├── UnsupportedMediaType        415  unsupported-media-type
    │   ├── PayloadTooLarge             413  payload-too-large
    │   └── InvalidInput                422  invalid-input
    ├── AuthenticationFailed            401  unauthorized          exit 4   (always the same body)
    ├── AccountSuspended                403  account-suspended     exit 4
    ├── NotFound                        404  not-found             exit 3
    │   ├── ModelNotFound
    │   ├── AccountNotFound
    │   └── KeyNotFound
    ├── Conflict                        409  conflict              exit 2
    ├── QuotaExceeded                   429  quota-exceeded        exit 5
    ├── StoreUnavailable                503  store-unavailable     exit 6
    └── UpstreamError                   502  upstream-error        exit 7
        └── UpstreamTimeout             504  upstream-timeout

:func:`problem_body` turns any of them into an RFC 9457 ``application/problem+json``
document (with an ``error`` member so Open Inference Protocol clients read it too);
the gateway and the CLI both go through it, so nothing maps errors twice.

Example:
    >>> err = InvalidInput("input-0: expected 64 features per row, got 63")
    >>> err.status, problem_body(err)["type"].endswith("#invalid-input")
    (422, True)
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://modelshield.dev/problems"


class ModelShieldError(Exception):
    """Base of every error modelshield raises on purpose."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"
    exit_code: ClassVar[int] = 1

    def __init__(self, detail: str = "", **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions: dict[str, Any] = extensions
        self.headers: dict[str, str] = {}

    @property
    def type_uri(self) -> str:
        return f"{PROBLEM_BASE}#{self.slug}"


class ConfigError(ModelShieldError):
    """The policy or the environment it names is unusable."""

    slug = "configuration-error"
    title = "Configuration error"
    exit_code = 2


class PolicyError(ConfigError):
    """A policy file failed validation; ``errors`` holds ``(path, message)`` pairs."""

    title = "Invalid policy"

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.source = source
        self.errors = errors
        lines = "; ".join(f"{path}: {message}" for path, message in errors)
        super().__init__(f"{source}: {lines}")


class RequestError(ModelShieldError):
    status = 400
    slug = "bad-request"
    title = "Bad request"
    exit_code = 2


class MalformedRequest(RequestError):
    slug = "malformed-request"
    title = "Malformed request"


class UnsupportedMediaType(RequestError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class PayloadTooLarge(RequestError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class InvalidInput(RequestError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"


class AuthenticationFailed(ModelShieldError):
    """Missing, malformed, unknown or revoked credentials: one opaque answer for all."""

    status = 401
    slug = "unauthorized"
    title = "Unauthorized"
    exit_code = 4

    def __init__(self, detail: str = "A valid API key is required.") -> None:
        super().__init__(detail)
        self.headers = {"WWW-Authenticate": 'Bearer realm="modelshield"'}


class AccountSuspended(ModelShieldError):
    status = 403
    slug = "account-suspended"
    title = "Account suspended"
    exit_code = 4


class NotFound(ModelShieldError):
    status = 404
    slug = "not-found"
    title = "Not found"
    exit_code = 3


class ModelNotFound(NotFound):
    slug = "model-not-found"
    title = "Model not found"


class AccountNotFound(NotFound):
    slug = "account-not-found"
    title = "Account not found"


class KeyNotFound(NotFound):
    slug = "key-not-found"
    title = "API key not found"


class Conflict(ModelShieldError):
    status = 409
    slug = "conflict"
    title = "Conflict"
    exit_code = 2


class QuotaExceeded(ModelShieldError):
    status = 429
    slug = "quota-exceeded"
    title = "Quota exceeded"
    exit_code = 5


class StoreUnavailable(ModelShieldError):
    status = 503
    slug = "store-unavailable"
    title = "Service unavailable"
    exit_code = 6


class UpstreamError(ModelShieldError):
    status = 502
    slug = "upstream-error"
    title = "Upstream model error"
    exit_code = 7


class UpstreamTimeout(UpstreamError):
    status = 504
    slug = "upstream-timeout"
    title = "Upstream model timed out"


def problem_body(error: ModelShieldError, instance: str | None = None) -> dict[str, Any]:
    """The RFC 9457 problem document for ``error``."""
    body: dict[str, Any] = {
        "type": error.type_uri,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(error.extensions)
    body["error"] = error.detail
    return body
