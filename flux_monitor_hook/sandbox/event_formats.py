"""core/v1 and events.k8s.io/v1 Events over one storage, converted as the real API server does."""
from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

_FIELD_RENAMES = {
    'regarding.': 'involvedObject.',
    'reportingController': 'reportingComponent',
}


def to_events_v1(core: Obj) -> Obj:
    source = core.get('source') or {}
    event: Obj = {
        'apiVersion': 'events.k8s.io/v1',
        'kind': 'Event',
        'metadata': core.get('metadata', {}),
        # The client models require eventTime; core Events often lack it, so derive it as the server does.
        'eventTime': core.get('eventTime') or _micro_time(core.get('firstTimestamp') or
                                                           core.get('metadata', {}).get('creationTimestamp')),
        'regarding': core.get('involvedObject', {}),
        'note': core.get('message', ''),
        'reason': core.get('reason', ''),
        'type': core.get('type', ''),
        'action': core.get('action', ''),
        'reportingController': core.get('reportingComponent') or source.get('component', ''),
        'reportingInstance': core.get('reportingInstance') or source.get('host', ''),
        'deprecatedSource': source,
        'deprecatedFirstTimestamp': core.get('firstTimestamp'),
        'deprecatedLastTimestamp': core.get('lastTimestamp'),
        'deprecatedCount': core.get('count', 1),
    }
    if core.get('related'):
        event['related'] = core['related']
    return event


def _micro_time(timestamp: str | None) -> str:
    if not timestamp:
        return '1970-01-01T00:00:00.000000Z'
    return timestamp.replace('Z', '.000000Z') if '.' not in timestamp else timestamp


def to_core(event: Obj) -> Obj:
    if event.get('apiVersion') != 'events.k8s.io/v1':
        return event
    source = event.get('deprecatedSource') or {'component': event.get('reportingController', '')}
    core: Obj = {
        'apiVersion': 'v1',
        'kind': 'Event',
        'metadata': event.get('metadata', {}),
        'involvedObject': event.get('regarding', {}),
        'message': event.get('note', ''),
        'reason': event.get('reason', ''),
        'type': event.get('type', ''),
        'action': event.get('action', ''),
        'eventTime': event.get('eventTime'),
        'reportingComponent': event.get('reportingController', ''),
        'reportingInstance': event.get('reportingInstance', ''),
        'source': source,
        'firstTimestamp': event.get('deprecatedFirstTimestamp'),
        'lastTimestamp': event.get('deprecatedLastTimestamp'),
        'count': event.get('deprecatedCount', 1),
    }
    return core


def core_field_selector(selector: str) -> str:
    """Translate an events.k8s.io field selector to the core field names the storage knows."""
    for new, old in _FIELD_RENAMES.items():
        selector = selector.replace(new, old)
    return selector
