"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) on plain JSON values."""
from __future__ import annotations

import copy
from typing import Any

from flux_monitor_hook.sandbox.errors import ApiError


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == '':
        return []
    if not path.startswith('/'):
        raise ApiError(422, f'json patch path {path!r} must start with "/"')
    return [part.replace('~1', '/').replace('~0', '~') for part in path[1:].split('/')]


def _parent(document: Any, parts: list[str]) -> Any:
    node = document
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ApiError(422, f'json patch: path /{"/".join(parts)} does not exist')
    return node


def _get(document: Any, parts: list[str]) -> Any:
    node = document
    for part in parts:
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ApiError(422, f'json patch: path /{"/".join(parts)} does not exist')
    return node


def _add(document: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _parent(document, parts)
    key = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if key == '-' else int(key)
        parent.insert(index, value)
    else:
        parent[key] = value
    return document


def _remove(document: Any, parts: list[str]) -> Any:
    parent = _parent(document, parts)
    key = parts[-1]
    try:
        if isinstance(parent, list):
            del parent[int(key)]
        else:
            del parent[key]
    except (KeyError, IndexError, ValueError) as error:
        raise ApiError(422, f'json patch: cannot remove /{"/".join(parts)}: not found') from error
    return document


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise ApiError.bad_request('json patch must be a list of operations')
    document = copy.deepcopy(target)
    try:
        for operation in operations:
            op = operation.get('op')
            parts = _pointer(operation.get('path', ''))
            if op == 'add':
                document = _add(document, parts, copy.deepcopy(operation['value']))
            elif op == 'remove':
                document = _remove(document, parts)
            elif op == 'replace':
                _get(document, parts)
                document = _add(_remove(document, parts), parts, copy.deepcopy(operation['value'])) if parts \
                    else copy.deepcopy(operation['value'])
            elif op in ('move', 'copy'):
                source = _pointer(operation['from'])
                value = copy.deepcopy(_get(document, source))
                if op == 'move':
                    document = _remove(document, source)
                document = _add(document, parts, value)
            elif op == 'test':
                if _get(document, parts) != operation.get('value'):
                    raise ApiError(422, f'json patch: test failed at {operation.get("path")}')
            else:
                raise ApiError.bad_request(f'json patch: unknown op {op!r}')
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as error:
        raise ApiError(422, f'json patch could not be applied: {error}') from error
    return document
