"""Status conditions written the way fluxcd/pkg runtime/conditions does."""
from __future__ import annotations

from typing import Any

from flux_monitor_hook.sandbox.store import now_rfc3339

Obj = dict[str, Any]

# pkg runtime/conditions/setter.go: negative-polarity and summary conditions first.
_ORDER = ('Stalled', 'Reconciling', 'Ready')


def find(obj: Obj, condition_type: str) -> Obj | None:
    for condition in (obj.get('status') or {}).get('conditions') or []:
        if condition.get('type') == condition_type:
            return condition
    return None


def set_condition(obj: Obj, condition_type: str, status: str, reason: str, message: str) -> None:
    status_block = obj.setdefault('status', {})
    conditions: list[Obj] = status_block.setdefault('conditions', [])
    generation = obj.get('metadata', {}).get('generation', 0)
    for condition in conditions:
        if condition['type'] == condition_type:
            if condition['status'] != status:
                condition['lastTransitionTime'] = now_rfc3339()
            condition.update(status=status, reason=reason, message=message, observedGeneration=generation)
            break
    else:
        conditions.append({'type': condition_type, 'status': status, 'reason': reason, 'message': message,
                           'observedGeneration': generation, 'lastTransitionTime': now_rfc3339()})
    _sort(conditions)


def delete(obj: Obj, condition_type: str) -> None:
    status_block = obj.get('status') or {}
    conditions = status_block.get('conditions') or []
    status_block['conditions'] = [c for c in conditions if c.get('type') != condition_type]


def _sort(conditions: list[Obj]) -> None:
    def rank(condition: Obj) -> tuple[int, str]:
        condition_type = condition['type']
        return (_ORDER.index(condition_type) if condition_type in _ORDER else len(_ORDER), condition_type)

    conditions.sort(key=rank)


def is_true(obj: Obj, condition_type: str) -> bool:
    condition = find(obj, condition_type)
    return condition is not None and condition.get('status') == 'True'
