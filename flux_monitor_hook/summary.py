"""The verdict of a wait, as the JSON summary (documented in the README) and for the renderers."""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

from flux_monitor_hook import exit_codes
from flux_monitor_hook.explain import Diagnosis
from flux_monitor_hook.tracker import Status

RESULT_EXIT_CODES = {
    'succeeded': exit_codes.SUCCESS,
    'no-sources': exit_codes.SUCCESS,
    'failed': exit_codes.FAILED,
    'timeout': exit_codes.TIMEOUT,
    'error': exit_codes.UNAVAILABLE,
    'interrupted': exit_codes.INTERRUPTED,
}


@dataclass(frozen=True)
class Failure:
    """What the failure block shows for one failed resource."""

    status: Status
    diagnosis: Diagnosis
    warnings: tuple[str, ...] = ()  # the newest Warning events of the object
    next_steps: tuple[str, ...] = ()


@dataclass
class Summary:
    result: str  # succeeded, failed, timeout, no-sources, error or interrupted
    revision: str
    branch: str | None
    repository: str  # already redacted
    duration: float
    sources: list[Status] = field(default_factory=list)
    resources: list[Status] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # result error: the one-line message, also printed on stderr
    error_code: int = exit_codes.UNAVAILABLE  # result error: usage (3) or unavailable (4)
    # What each followed Kustomization applied (its status.inventory), as Kind/namespace/name, for -v.
    inventories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return self.error_code if self.result == 'error' else RESULT_EXIT_CODES[self.result]

    def to_json(self) -> dict[str, Any]:
        diagnoses = {failure.status.key: failure.diagnosis for failure in self.failures}
        return {
            'type': 'summary',
            'result': self.result,
            'exit_code': self.exit_code,
            'revision': self.revision,
            'branch': self.branch,
            'repository': self.repository,
            'duration_s': round(self.duration, 3),
            'sources': [status_json(s, diagnoses.get(s.key)) for s in self.sources],
            'resources': [status_json(s, diagnoses.get(s.key)) for s in self.resources],
            'notes': list(self.notes),
            **({'error': self.error} if self.result == 'error' else {}),
        }


def status_json(status: Status, diagnosis: Diagnosis | None = None) -> dict[str, Any]:
    duration = status.duration
    return {
        'kind': status.key.kind,
        'namespace': status.key.namespace,
        'name': status.key.name,
        'cluster': status.key.cluster,
        'state': status.state.value,
        'revision': status.revision or None,
        'duration_s': None if duration is None else round(duration, 3),
        'reason': status.reason or None,
        'message': status.message or None,
        'preexisting': status.preexisting,
        'unchanged': status.unchanged,
        'diagnosis': None if diagnosis is None else {
            'category': diagnosis.category,
            'object': diagnosis.object,
            'field': diagnosis.field,
            'summary': diagnosis.summary,
            'suggestions': list(diagnosis.suggestions),
        },
    }
