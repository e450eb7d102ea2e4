"""Label and field selectors with the syntax and semantics of the Kubernetes API server."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flux_monitor_hook.sandbox.errors import ApiError

Matcher = Callable[[dict[str, Any]], bool]

_SET_TERM = re.compile(r'^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$')
_EQ_TERM = re.compile(r'^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$')


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside a set's parentheses."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        if char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
        if char == ',' and depth == 0:
            terms.append(''.join(current))
            current = []
        else:
            current.append(char)
    terms.append(''.join(current))
    return [term for term in terms if term.strip()]


LabelCheck = Callable[[dict[str, str]], bool]


def _label_check(term: str) -> LabelCheck:
    eq = _EQ_TERM.match(term)
    if eq:
        key, op, value = eq.groups()
        negate = op == '!='
        return lambda labels: (labels.get(key) == value) != negate
    set_term = _SET_TERM.match(term)
    if not set_term:
        raise ApiError.bad_request(f'unable to parse requirement: invalid label selector: {term.strip()!r}')
    exclude, key, op, values_text = set_term.groups()
    if op:
        values = {v.strip() for v in values_text.split(',') if v.strip()}
        inside = op == 'in'
        return lambda labels: (labels.get(key) in values) == inside
    present = not exclude
    return lambda labels: (key in labels) == present


def parse_label_selector(selector: str | None) -> Matcher:
    if not selector:
        return lambda obj: True
    checks = [_label_check(term) for term in _split_terms(selector)]

    def matches(obj: dict[str, Any]) -> bool:
        labels = (obj.get('metadata') or {}).get('labels') or {}
        return all(check(labels) for check in checks)

    return matches


def _field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split('.'):
        if not isinstance(value, dict):
            return ''
        value = value.get(part)
    if value is None:
        return ''
    return str(value)


def parse_field_selector(selector: str | None, supported: frozenset[str]) -> Matcher:
    """Field selectors: only the fields the server declares for the kind, as a real server refuses others."""
    if not selector:
        return lambda obj: True
    checks: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector):
        match = _EQ_TERM.match(term)
        if not match:
            raise ApiError.bad_request(f'invalid field selector: {term.strip()!r}')
        field_path, op, value = match.groups()
        if field_path not in supported:
            raise ApiError.bad_request(f'field label not supported: {field_path}')
        checks.append((field_path, op == '!=', value))

    def matches(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, path) == value) != negate for path, negate, value in checks)

    return matches


BASE_FIELDS = frozenset({'metadata.name', 'metadata.namespace'})
EVENT_FIELDS = BASE_FIELDS | frozenset({
    'involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid',
    'involvedObject.apiVersion', 'involvedObject.resourceVersion', 'involvedObject.fieldPath',
    'reason', 'reportingComponent', 'source', 'type',
})
