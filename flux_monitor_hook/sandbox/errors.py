"""API errors rendered as metav1 Status objects, with the codes and reasons of a real API server."""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

_REASONS = {
    400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed',
    406: 'NotAcceptable', 409: 'AlreadyExists', 410: 'Expired', 415: 'UnsupportedMediaType',
    422: 'Invalid', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable',
    504: 'Timeout',
}


@dataclass
class ApiError(Exception):
    code: int
    message: str
    reason: str = ''
    details: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = _REASONS.get(self.code, 'Unknown')
        super().__init__(self.message)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
            'message': self.message, 'reason': self.reason, 'code': self.code,
        }
        if self.details:
            status['details'] = self.details
        return status

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, message)

    @classmethod
    def not_found(cls, group_resource: str, name: str) -> ApiError:
        plural, _, group = group_resource.partition('.')
        details = {'name': name, 'group': group, 'kind': plural}
        return cls(404, f'{group_resource} "{name}" not found', details=details)

    @classmethod
    def already_exists(cls, group_resource: str, name: str) -> ApiError:
        return cls(409, f'{group_resource} "{name}" already exists', 'AlreadyExists',
                   details={'name': name, 'kind': group_resource.partition('.')[0]})

    @classmethod
    def conflict(cls, group_resource: str, name: str) -> ApiError:
        return cls(
            409,
            f'Operation cannot be fulfilled on {group_resource} "{name}": the object has been modified; '
            'please apply your changes to the latest version and try again',
            'Conflict', details={'name': name, 'kind': group_resource.partition('.')[0]},
        )

    @classmethod
    def invalid(cls, kind: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
        text = ', '.join(f'{field_path}: {message}' for field_path, message in causes)
        return cls(
            422, f'{kind} "{name}" is invalid: {text}', 'Invalid',
            details={'name': name, 'kind': kind,
                     'causes': [{'field': f, 'message': m, 'reason': 'FieldValueInvalid'} for f, m in causes]},
        )

    @classmethod
    def gone(cls, message: str) -> ApiError:
        return cls(410, message, 'Expired')
