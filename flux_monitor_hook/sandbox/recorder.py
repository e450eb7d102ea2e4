"""Kubernetes Events as the Flux controllers emit them (pkg runtime/events), stored as core/v1 Events."""
from __future__ import annotations

import hashlib
from typing import Any

from flux_monitor_hook.sandbox.errors import ApiError
from flux_monitor_hook.sandbox.store import Store
from flux_monitor_hook.sandbox.store import now_rfc3339

Obj = dict[str, Any]


class Recorder:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._events = store.registry.by_path('', 'v1', 'events')

    def event(self, obj: Obj, event_type: str, reason: str, message: str, *, component: str,
              annotations: dict[str, str] | None = None) -> None:
        """Record one event; a repeat of the same one bumps count and lastTimestamp, as client-go does."""
        assert self._events is not None
        metadata = obj['metadata']
        namespace = metadata.get('namespace') or 'default'
        involved = {
            'kind': obj['kind'], 'namespace': namespace, 'name': metadata['name'], 'uid': metadata.get('uid', ''),
            'apiVersion': obj['apiVersion'], 'resourceVersion': metadata.get('resourceVersion', ''),
        }
        digest = hashlib.sha256(
            f'{involved["kind"]}/{namespace}/{involved["name"]}/{event_type}/{reason}/{message}'.encode()
        ).hexdigest()[:16]
        name = f'{metadata["name"]}.{digest}'
        now = now_rfc3339()
        existing = self._store.try_get(self._events, namespace, name)
        try:
            if existing:
                def bump(current: Obj) -> Obj:
                    current['count'] = current.get('count', 1) + 1
                    current['lastTimestamp'] = now
                    current['involvedObject'] = involved
                    return current

                self._store.patch(self._events, namespace, name, bump)
                return
            self._store.create(self._events, {
                'metadata': {'name': name, 'namespace': namespace, 'annotations': dict(annotations or {})},
                'involvedObject': involved,
                'reason': reason,
                'message': message,
                'type': event_type,
                'source': {'component': component},
                'reportingComponent': component,
                'reportingInstance': f'{component}-sandbox',
                'firstTimestamp': now,
                'lastTimestamp': now,
                'count': 1,
            }, namespace)
        except ApiError:
            pass  # the namespace went away meanwhile; a lost event is what a real cluster does too
