"""The sandbox's object store: what etcd and the API server's registry logic are in a real cluster.

Objects are plain JSON dicts that are never mutated once stored (every write stores a new dict), so readers
can serialise them without copying. Every write gets the next cluster-wide resourceVersion and is appended to
a bounded change history that watches resume from; a resume older than that window is answered with 410.
"""
from __future__ import annotations

import base64
import copy
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from typing import Any

from flux_monitor_hook.sandbox import selectors
from flux_monitor_hook.sandbox.errors import ApiError
from flux_monitor_hook.sandbox.kinds import Registry
from flux_monitor_hook.sandbox.kinds import ResourceType
from flux_monitor_hook.sandbox.kinds import guess_plural
from flux_monitor_hook.sandbox.kinds import types_from_crd

Obj = dict[str, Any]
StorageKey = tuple[str, str]

_CLUSTER_SCOPED_HINTS = ('Cluster', 'Namespace', 'PersistentVolume', 'StorageClass', 'PriorityClass')


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


@dataclass(frozen=True)
class Change:
    rv: int
    type: str  # ADDED, MODIFIED or DELETED
    storage: StorageKey
    obj: Obj
    old: Obj | None


def _spec_part(obj: Obj) -> Obj:
    """What moves metadata.generation: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ('metadata', 'status', 'apiVersion', 'kind')}


def _key(namespace: str | None, name: str) -> tuple[str, str]:
    return (namespace or '', name)


class Store:
    def __init__(self, registry: Registry, *, history_limit: int = 20000, seed: int = 0,
                 strict_kinds: bool = False) -> None:
        self.registry = registry
        self.strict_kinds = strict_kinds
        self.history_limit = history_limit
        self._cond = threading.Condition(threading.RLock())
        self._objects: dict[StorageKey, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history: list[Change] = []
        self._compacted_rv = 0  # changes up to this resourceVersion are no longer retained
        self._random = random.Random(seed)
        self._snapshots: dict[str, list[Obj]] = {}
        self._listeners: list[Callable[[Change], None]] = []
        # What apply last sent per object (with the uid it was sent to): the fields that applier owns.
        self._applied: dict[tuple[StorageKey, str, str], tuple[str, Obj]] = {}

    # -- plumbing --------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def condition(self) -> threading.Condition:
        """Notified after every write; watchers wait on it."""
        return self._cond

    def subscribe(self, listener: Callable[[Change], None]) -> None:
        """Call listener after every write, in write order, while the store is locked: keep it short."""
        with self._cond:
            self._listeners.append(listener)

    def _new_uid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def _record(self, change_type: str, storage: StorageKey, obj: Obj, old: Obj | None) -> Change:
        change = Change(self._rv, change_type, storage, obj, old)
        self._history.append(change)
        if len(self._history) > self.history_limit * 2:
            dropped = self._history[: len(self._history) - self.history_limit]
            self._compacted_rv = dropped[-1].rv
            del self._history[: len(dropped)]
        for listener in self._listeners:
            listener(change)
        self._cond.notify_all()
        return change

    def compact(self) -> None:
        """Forget the whole change history, as etcd compaction would: older watch resumes get 410."""
        with self._cond:
            if self._history:
                self._compacted_rv = self._history[-1].rv
                self._history.clear()

    def _bucket(self, resource_type: ResourceType) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault(resource_type.storage_key, {})

    def _check_namespace(self, resource_type: ResourceType, namespace: str | None) -> None:
        if not resource_type.namespaced:
            return
        if not namespace:
            raise ApiError.bad_request('the namespace of the provided object does not match the namespace '
                                       'sent on the request')
        namespaces = self._objects.get(('', 'namespaces'), {})
        if _key(None, namespace) not in namespaces:
            raise ApiError.not_found('namespaces', namespace)
        if namespaces[_key(None, namespace)]['metadata'].get('deletionTimestamp'):
            raise ApiError(403, f'{resource_type.kind.lower()} "..." is forbidden: unable to create new content '
                                f'in namespace {namespace} because it is being terminated', 'Forbidden')

    # -- kinds -----------------------------------------------------------------------------------------

    def resource_type_for(self, api_version: str, kind: str) -> ResourceType:
        """The served type for apiVersion/kind, registering it on the fly unless kinds are strict."""
        found = self.registry.by_kind(api_version, kind)
        if found:
            return found
        if self.strict_kinds:
            raise ApiError(404, f'no matches for kind "{kind}" in version "{api_version}"', 'NotFound')
        group, _, version = api_version.rpartition('/')
        resource_type = ResourceType(
            group=group, version=version, kind=kind, plural=guess_plural(kind), singular=kind.lower(),
            namespaced=not kind.startswith(_CLUSTER_SCOPED_HINTS), has_status=True,
        )
        self.registry.add(resource_type)
        return resource_type

    def _on_crd_change(self, change_type: str, crd: Obj) -> None:
        spec = crd.get('spec') or {}
        names = spec.get('names') or {}
        if not spec.get('group') or not names.get('plural'):
            return
        self.registry.remove_group_resource(spec['group'], names['plural'])
        if change_type != 'DELETED':
            for resource_type in types_from_crd(crd):
                self.registry.add(resource_type)
        else:
            bucket = self._objects.pop((spec['group'], names['plural']), {})
            for obj in bucket.values():
                self._rv += 1
                gone = self._with_rv(obj)
                self._record('DELETED', (spec['group'], names['plural']), gone, obj)

    def _with_rv(self, obj: Obj) -> Obj:
        metadata = dict(obj['metadata'])
        metadata['resourceVersion'] = str(self._rv)
        return {**obj, 'metadata': metadata}

    # -- reads -----------------------------------------------------------------------------------------

    def get(self, resource_type: ResourceType, namespace: str | None, name: str, *, copy_obj: bool = True) -> Obj:
        with self._cond:
            obj = self._bucket(resource_type).get(_key(namespace if resource_type.namespaced else None, name))
        if obj is None:
            raise ApiError.not_found(resource_type.group_resource, name)
        return copy.deepcopy(obj) if copy_obj else obj

    def try_get(self, resource_type: ResourceType, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.get(resource_type, namespace, name)
        except ApiError:
            return None

    def list_objects(
        self, resource_type: ResourceType, namespace: str | None = None, *, label_selector: str = '',
        field_selector: str = '', limit: int = 0, continue_token: str = '', copy_obj: bool = True,
    ) -> tuple[list[Obj], int, str, int | None]:
        """Items, list resourceVersion, continue token and remaining count (as a real server pages)."""
        if continue_token:
            return self._continue(continue_token, limit, copy_obj)
        label_match = selectors.parse_label_selector(label_selector)
        field_match = selectors.parse_field_selector(field_selector, field_selectors_for(resource_type))
        with self._cond:
            rv = self._rv
            bucket = self._bucket(resource_type)
            items = [
                obj for key, obj in sorted(bucket.items())
                if (not namespace or key[0] == namespace) and label_match(obj) and field_match(obj)
            ]
        return self._page(items, rv, limit, copy_obj)

    def _page(self, items: list[Obj], rv: int, limit: int, copy_obj: bool
              ) -> tuple[list[Obj], int, str, int | None]:
        token = ''
        remaining: int | None = None
        if limit and len(items) > limit:
            rest = items[limit:]
            items = items[:limit]
            snapshot_id = f'{rv}-{self._new_uid()}'
            with self._cond:
                self._snapshots[snapshot_id] = rest
                while len(self._snapshots) > 256:
                    self._snapshots.pop(next(iter(self._snapshots)))
            token = base64.urlsafe_b64encode(json.dumps({'rv': rv, 'id': snapshot_id}).encode()).decode()
            remaining = len(rest)
        if copy_obj:
            items = copy.deepcopy(items)
        return items, rv, token, remaining

    def _continue(self, token: str, limit: int, copy_obj: bool) -> tuple[list[Obj], int, str, int | None]:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            rv, snapshot_id = int(decoded['rv']), str(decoded['id'])
        except (ValueError, KeyError, TypeError) as error:
            raise ApiError.bad_request(f'invalid continue token: {error}') from error
        with self._cond:
            rest = self._snapshots.pop(snapshot_id, None)
        if rest is None:
            raise ApiError.gone('The provided continue parameter is too old to display a consistent list '
                                'result. You can start a new list without the continue parameter.')
        return self._page(rest, rv, limit, copy_obj)

    def changes_after(self, rv: int) -> list[Change]:
        """Every retained change newer than rv; 410 when some of them are no longer retained."""
        with self._cond:
            if rv < self._compacted_rv:
                raise ApiError.gone(f'too old resource version: {rv} ({self._compacted_rv + 1})')
            history = self._history
            if not history or history[-1].rv <= rv:
                return []
            low, high = 0, len(history)
            while low < high:
                mid = (low + high) // 2
                if history[mid].rv <= rv:
                    low = mid + 1
                else:
                    high = mid
            return history[low:]

    # -- writes ----------------------------------------------------------------------------------------

    def create(self, resource_type: ResourceType, obj: Obj, namespace: str | None = None) -> Obj:
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault('metadata', {})
        if not metadata.get('name'):
            if metadata.get('generateName'):
                metadata['name'] = metadata['generateName'] + self._new_uid()[:5]
            else:
                raise ApiError.invalid(resource_type.kind, '', [('metadata.name', 'Required value: name or '
                                                                 'generateName is required')])
        if resource_type.namespaced:
            namespace = namespace or metadata.get('namespace') or 'default'
            if metadata.get('namespace') not in (None, '', namespace):
                raise ApiError.bad_request('the namespace of the provided object does not match the namespace '
                                           'sent on the request')
            metadata['namespace'] = namespace
        else:
            metadata.pop('namespace', None)
            namespace = None
        obj['apiVersion'] = resource_type.api_version
        obj['kind'] = resource_type.kind
        with self._cond:
            if resource_type.kind != 'Namespace':
                self._check_namespace(resource_type, namespace)
            bucket = self._bucket(resource_type)
            key = _key(namespace, metadata['name'])
            if key in bucket:
                raise ApiError.already_exists(resource_type.group_resource, metadata['name'])
            self._rv += 1
            metadata['uid'] = self._new_uid()
            metadata['creationTimestamp'] = now_rfc3339()
            metadata['resourceVersion'] = str(self._rv)
            metadata.pop('deletionTimestamp', None)
            if resource_type.has_status:
                metadata['generation'] = 1
            if resource_type.kind == 'Namespace':
                obj['status'] = {'phase': 'Active'}
                obj.setdefault('spec', {'finalizers': ['kubernetes']})
                metadata.setdefault('labels', {})['kubernetes.io/metadata.name'] = metadata['name']
            bucket[key] = obj
            self._record('ADDED', resource_type.storage_key, obj, None)
            if resource_type.kind == 'CustomResourceDefinition':
                self._on_crd_change('ADDED', obj)
            return copy.deepcopy(obj)

    def update(
        self, resource_type: ResourceType, obj: Obj, *, namespace: str | None = None, name: str | None = None,
        subresource: str | None = None, check_resource_version: bool = True,
    ) -> Obj:
        """PUT semantics: the whole object, refused with 409 when its resourceVersion is stale."""
        metadata = obj.get('metadata') or {}
        name = name or metadata.get('name')
        if not name:
            raise ApiError.invalid(resource_type.kind, '', [('metadata.name', 'Required value')])
        if metadata.get('name') not in (None, name):
            raise ApiError.bad_request(f'the name of the object ({metadata.get("name")}) does not match the name '
                                       f'on the URL ({name})')
        namespace = (namespace or metadata.get('namespace')) if resource_type.namespaced else None
        with self._cond:
            bucket = self._bucket(resource_type)
            key = _key(namespace, name)
            current = bucket.get(key)
            if current is None:
                raise ApiError.not_found(resource_type.group_resource, name)
            sent_rv = metadata.get('resourceVersion')
            if check_resource_version and sent_rv and sent_rv != current['metadata']['resourceVersion']:
                raise ApiError.conflict(resource_type.group_resource, name)
            return self._replace(resource_type, key, current, copy.deepcopy(obj), subresource)

    def patch(
        self, resource_type: ResourceType, namespace: str | None, name: str,
        mutate: Callable[[Obj], Obj], *, subresource: str | None = None,
    ) -> Obj:
        """Read-modify-write under the lock, so a patch never conflicts (as in a real server)."""
        namespace = namespace if resource_type.namespaced else None
        with self._cond:
            bucket = self._bucket(resource_type)
            key = _key(namespace, name)
            current = bucket.get(key)
            if current is None:
                raise ApiError.not_found(resource_type.group_resource, name)
            desired = mutate(copy.deepcopy(current))
            if not isinstance(desired, dict):
                raise ApiError(422, 'the patch did not produce an object')
            desired_metadata = desired.get('metadata') or {}
            if desired_metadata.get('name', name) != name:
                raise ApiError(422, 'metadata.name cannot be changed by a patch')
            return self._replace(resource_type, key, current, desired, subresource)

    def _replace(self, resource_type: ResourceType, key: tuple[str, str], current: Obj, desired: Obj,
                 subresource: str | None) -> Obj:
        if subresource == 'status':
            # The status subresource changes status only; everything else stays as stored.
            new = {**current, 'status': desired.get('status')}
            if new['status'] is None:
                new.pop('status')
        else:
            new = desired
            if resource_type.has_status:
                # The main resource ignores status changes when a status subresource exists.
                if 'status' in current:
                    new['status'] = current['status']
                else:
                    new.pop('status', None)
        new['apiVersion'] = resource_type.api_version if resource_type.storage_group is None \
            else current['apiVersion']
        new['kind'] = current['kind']
        metadata = dict(new.get('metadata') or {})
        old_metadata = current['metadata']
        if subresource == 'status':
            metadata = dict(old_metadata)
        for immutable in ('uid', 'creationTimestamp', 'namespace', 'name', 'deletionTimestamp'):
            if immutable in old_metadata:
                metadata[immutable] = old_metadata[immutable]
            else:
                metadata.pop(immutable, None)
        if 'generation' in old_metadata:
            generation = old_metadata['generation']
            if subresource != 'status' and _spec_part(new) != _spec_part(current):
                generation += 1
            metadata['generation'] = generation
        new['metadata'] = metadata
        if _without_rv(new) == _without_rv(current):
            return copy.deepcopy(current)  # a no-op write does not move resourceVersion, as in a real server
        self._rv += 1
        metadata['resourceVersion'] = str(self._rv)
        bucket = self._bucket(resource_type)
        if metadata.get('deletionTimestamp') and not metadata.get('finalizers'):
            del bucket[key]
            self._record('DELETED', resource_type.storage_key, new, current)
            return copy.deepcopy(new)
        bucket[key] = new
        self._record('MODIFIED', resource_type.storage_key, new, current)
        if resource_type.kind == 'CustomResourceDefinition':
            self._on_crd_change('MODIFIED', new)
        return copy.deepcopy(new)

    def delete(self, resource_type: ResourceType, namespace: str | None, name: str) -> Obj:
        namespace = namespace if resource_type.namespaced else None
        with self._cond:
            bucket = self._bucket(resource_type)
            key = _key(namespace, name)
            current = bucket.get(key)
            if current is None:
                raise ApiError.not_found(resource_type.group_resource, name)
            if current['metadata'].get('finalizers') and resource_type.kind != 'Namespace':
                if current['metadata'].get('deletionTimestamp'):
                    return copy.deepcopy(current)
                self._rv += 1
                metadata = {**current['metadata'], 'deletionTimestamp': now_rfc3339(),
                            'deletionGracePeriodSeconds': 0, 'resourceVersion': str(self._rv)}
                if 'generation' in metadata:
                    metadata['generation'] += 1
                new = {**current, 'metadata': metadata}
                bucket[key] = new
                self._record('MODIFIED', resource_type.storage_key, new, current)
                return copy.deepcopy(new)
            if resource_type.kind == 'Namespace':
                self._delete_namespace_contents(name)
            del bucket[key]
            self._rv += 1
            gone = self._with_rv(current)
            self._record('DELETED', resource_type.storage_key, gone, current)
            if resource_type.kind == 'CustomResourceDefinition':
                self._on_crd_change('DELETED', current)
            return copy.deepcopy(gone)

    def _delete_namespace_contents(self, namespace: str) -> None:
        for storage, bucket in self._objects.items():
            for key in [k for k in bucket if k[0] == namespace]:
                current = bucket.pop(key)
                self._rv += 1
                self._record('DELETED', storage, self._with_rv(current), current)

    # -- conveniences for controllers and tests --------------------------------------------------------

    def apply(self, resource_type: ResourceType, obj: Obj) -> tuple[Obj, str]:
        """Create or update like server-side apply by one field manager: 'created', 'configured' or 'unchanged'.

        Fields this applier sent last time and no longer sends are removed; fields it never sent stay, as
        managedFields make a real server keep them: server defaults (a Namespace's name label), `flux suspend`,
        `flux reconcile` annotations, finalizers. Lists are owned whole. Status is left to the status subresource.
        """
        metadata = obj['metadata']
        namespace = metadata.get('namespace') if resource_type.namespaced else None
        memo_key = (resource_type.storage_key, namespace or '', str(metadata['name']))
        desired = copy.deepcopy({k: v for k, v in obj.items() if k != 'status'})
        with self._cond:
            current = self._bucket(resource_type).get(_key(namespace, metadata['name']))
            if current is None:
                created = self.create(resource_type, obj, namespace)
                self._applied[memo_key] = (created['metadata']['uid'], desired)
                return created, 'created'
            before = current['metadata']['resourceVersion']
            owner_uid, previous = self._applied.get(memo_key, ('', {}))
            if owner_uid != current['metadata']['uid']:
                previous = {}  # applied to an object since deleted: this one owns nothing yet

            def merge(existing: Obj) -> Obj:
                return _merge_applied(existing, previous, desired)

            updated = self.patch(resource_type, namespace, metadata['name'], merge)
            self._applied[memo_key] = (updated['metadata']['uid'], desired)
            changed = updated['metadata']['resourceVersion'] != before
            return updated, 'configured' if changed else 'unchanged'

    def set_status(self, resource_type: ResourceType, namespace: str | None, name: str,
                   mutate: Callable[[Obj], None]) -> Obj:
        """Change an object's status in place of a controller's status update."""
        def apply_mutation(obj: Obj) -> Obj:
            obj.setdefault('status', {})
            mutate(obj)
            return obj

        return self.patch(resource_type, namespace, name, apply_mutation, subresource='status')

    def objects(self, resource_type: ResourceType) -> list[Obj]:
        """Every stored object of a type, not copied: callers must not change them."""
        with self._cond:
            return [obj for _, obj in sorted(self._bucket(resource_type).items())]


def _merge_applied(current: Obj, previous: Obj, desired: Obj) -> Obj:
    """Three-way merge of an apply: drop what the applier gave up, then lay its new intent over current."""
    merged = dict(current)
    for key in previous:
        if key not in desired:
            merged.pop(key, None)
    for key, value in desired.items():
        before = previous.get(key)
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_applied(merged[key], before if isinstance(before, dict) else {}, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _without_rv(obj: Obj) -> Obj:
    metadata = {k: v for k, v in obj.get('metadata', {}).items() if k != 'resourceVersion'}
    return {**obj, 'metadata': metadata}


def field_selectors_for(resource_type: ResourceType) -> frozenset[str]:
    if resource_type.storage_key == ('', 'events'):
        return selectors.EVENT_FIELDS
    if resource_type.kind == 'Secret':
        return selectors.BASE_FIELDS | {'type'}
    if resource_type.kind == 'Namespace':
        return selectors.BASE_FIELDS | {'status.phase'}
    return selectors.BASE_FIELDS


def wait_for_change(store: Store, after_rv: int, timeout: float) -> int:
    """Block until the store moves past after_rv or timeout passes; the current resourceVersion."""
    deadline = time.monotonic() + timeout
    with store.condition:
        while store.resource_version <= after_rv:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            store.condition.wait(remaining)
        return store.resource_version
