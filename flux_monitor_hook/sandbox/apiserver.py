"""The sandbox's Kubernetes REST API over real HTTP (or HTTPS) on 127.0.0.1.

It serves what the official clients need for the calls flux-monitor makes: legacy discovery, get, list with
selectors and pagination, watch with resume, bookmarks and 410, create, update, merge and JSON patches,
delete with finalizers, and the status subresource; errors are metav1 Status objects.
"""
from __future__ import annotations

import json
import math
import socket
import ssl
import threading
import time
from collections import Counter
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from flux_monitor_hook.sandbox import event_formats
from flux_monitor_hook.sandbox import patches
from flux_monitor_hook.sandbox import selectors
from flux_monitor_hook.sandbox.errors import ApiError
from flux_monitor_hook.sandbox.faults import FaultInjector
from flux_monitor_hook.sandbox.kinds import ResourceType
from flux_monitor_hook.sandbox.store import Obj
from flux_monitor_hook.sandbox.store import Store
from flux_monitor_hook.sandbox.store import field_selectors_for

KUBERNETES_VERSION = {'major': '1', 'minor': '32', 'gitVersion': 'v1.32.0+flux-sandbox',
                      'gitCommit': '0000000000000000000000000000000000000000', 'gitTreeState': 'clean',
                      'buildDate': '2026-01-01T00:00:00Z', 'goVersion': 'go1.23', 'compiler': 'gc',
                      'platform': 'linux/amd64'}

_SUBRESOURCE_VERBS = ('get', 'patch', 'update')


@dataclass(frozen=True)
class Rule:
    """One allowed (verbs x resources) pair; '*' matches anything. Resources are plurals or plural/sub."""

    verbs: frozenset[str]
    resources: frozenset[str]

    def allows(self, verb: str, resource: str) -> bool:
        return ('*' in self.verbs or verb in self.verbs) and (
            '*' in self.resources or resource in self.resources or resource.split('/')[0] in self.resources
        )


@dataclass(frozen=True)
class Identity:
    user: str
    rules: tuple[Rule, ...] | None  # None: allowed everything

    def allows(self, verb: str, resource: str) -> bool:
        return self.rules is None or any(rule.allows(verb, resource) for rule in self.rules)


def read_only_rules() -> tuple[Rule, ...]:
    return (Rule(frozenset({'get', 'list', 'watch'}), frozenset({'*'})),)


@dataclass(frozen=True)
class Request:
    """One request as it arrived (time.monotonic()), and the fault injected into it, if any."""

    at: float
    verb: str
    resource: str
    fault: str | None = None  # 'drop', or the injected status code as text ('503', '429')


@dataclass
class RequestLog:
    """Counts of requests the server answered, by (verb, resource): for API load tests and benchmarks.

    `requests` also lists every request that reached a fault decision, in order and timestamped, including
    those answered with an injected failure or dropped (which `counts` leaves out): for retry tests.
    """

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    requests: deque[Request] = field(default_factory=lambda: deque(maxlen=100_000))  # the newest, in order
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, verb: str, resource: str, at: float | None = None) -> None:
        with self._lock:
            self.counts[(verb, resource)] += 1
            self.requests.append(Request(time.monotonic() if at is None else at, verb, resource))

    def record_fault(self, verb: str, resource: str, fault: str, at: float) -> None:
        with self._lock:
            self.requests.append(Request(at, verb, resource, fault))

    def attempts(self, verb: str, resource: str) -> list[Request]:
        """Every request of that verb and resource, answered or failed, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.verb == verb and r.resource == resource]

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self.counts)


@dataclass(frozen=True)
class _Target:
    resource_type: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def resource(self) -> str:
        plural = self.resource_type.plural
        return f'{plural}/{self.subresource}' if self.subresource else plural


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    api: ApiServer


class ApiServer:
    def __init__(self, store: Store, *, port: int = 0, tls_context: ssl.SSLContext | None = None,
                 faults: FaultInjector | None = None, bookmark_interval: float = 5.0) -> None:
        self.store = store
        self.port = port
        self.tls_context = tls_context
        self.faults = faults or FaultInjector()
        self.bookmark_interval = bookmark_interval
        self.identities: dict[str, Identity] = {}
        # 'group/version's not served (absent from discovery, 404 on requests), e.g. to play a cluster whose
        # Flux is older than the store's objects: the controllers, which use the store, are not affected.
        self.hidden_versions: set[str] = set()
        self.log = RequestLog()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._stopping = threading.Event()
        self._lifecycle = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = 'https' if self.tls_context else 'http'
        return f'{scheme}://127.0.0.1:{self.port}'

    def add_token(self, token: str, user: str = 'sandbox-admin', rules: tuple[Rule, ...] | None = None) -> None:
        self.identities[token] = Identity(user, rules)

    def revoke_token(self, token: str) -> None:
        self.identities.pop(token, None)

    def start(self) -> None:
        with self._lifecycle:
            self._stopping.clear()
            server = _Server(('127.0.0.1', self.port), _Handler)
            server.api = self
            if self.tls_context:
                server.socket = self.tls_context.wrap_socket(server.socket, server_side=True)
            self.port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                                            name='sandbox-apiserver', daemon=True)
            self._thread.start()
            for after, duration in self.faults.outages:
                threading.Timer(after, self.outage, args=(duration,)).start()
            self.faults.outages.clear()

    def stop(self) -> None:
        with self._lifecycle:
            self._stopping.set()
            server, self._server = self._server, None
            if server is None:
                return
            server.shutdown()
            server.server_close()
            with self._connections_lock:
                connections = list(self._connections)
            for connection in connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self.store.condition:
                self.store.condition.notify_all()

    def outage(self, seconds: float) -> None:
        """Take the whole server down, then bring it back on the same port."""
        self.stop()
        if seconds > 0:
            time.sleep(seconds)
        self.start()

    def start_outage(self, seconds: float) -> threading.Thread:
        thread = threading.Thread(target=self.outage, args=(seconds,), daemon=True)
        thread.start()
        return thread

    @property
    def running(self) -> bool:
        return self._server is not None and not self._stopping.is_set()

    def _track(self, connection: socket.socket, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


# -- request handling ---------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.api._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.api._track(self.connection, False)

    @property
    def api(self) -> ApiServer:
        return self.server.api

    def do_GET(self) -> None:
        self._dispatch('GET')

    def do_POST(self) -> None:
        self._dispatch('POST')

    def do_PUT(self) -> None:
        self._dispatch('PUT')

    def do_PATCH(self) -> None:
        self._dispatch('PATCH')

    def do_DELETE(self) -> None:
        self._dispatch('DELETE')

    # -- plumbing --------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b'0', 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b''.join(chunks)
        length = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(length) if length else b''

    def _json_body(self, raw: bytes) -> Any:
        if not raw:
            raise ApiError.bad_request('the request body is empty')
        try:
            return json.loads(raw)
        except ValueError:
            pass
        try:
            import yaml

            return yaml.safe_load(raw)
        except Exception as error:
            raise ApiError.bad_request(f'the body of the request could not be decoded: {error}') from error

    def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(',', ':')).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-cache, private')
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, error: ApiError) -> None:
        headers = {}
        if error.retry_after is not None:
            headers['Retry-After'] = str(max(1, math.ceil(error.retry_after)))  # whole seconds, as HTTP says
        self._send(error.code, error.status(), headers)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- dispatch --------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = split.path.rstrip('/') or '/'
        params = {key: values[-1] for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        body = self._body() if method in ('POST', 'PUT', 'PATCH', 'DELETE') else b''
        try:
            identity = self._authenticate(path)
            discovery = self._discovery(path) if method == 'GET' else None
            if discovery is not None:
                arrived = time.monotonic()
                if not self._apply_faults('get', 'discovery', arrived):
                    return
                self.api.log.add('get', 'discovery', arrived)
                self._send(200, discovery)
                return
            target = self._resolve(path)
            verb = _verb(method, target, params)
            if identity is not None and not identity.allows(verb, target.resource):
                raise _forbidden(identity, verb, target)
            arrived = time.monotonic()
            if not self._apply_faults(verb, target.resource, arrived):
                return
            self.api.log.add(verb, target.resource, arrived)
            if verb == 'watch':
                self._watch(target, params)
                return
            self._handle(verb, target, params, body, self.headers.get('Content-Type', ''))
        except ApiError as error:
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _authenticate(self, path: str) -> Identity | None:
        if path in ('/version', '/healthz', '/livez', '/readyz'):
            return None
        header = self.headers.get('Authorization', '')
        token = header[7:].strip() if header.lower().startswith('bearer ') else ''
        identity = self.api.identities.get(token) if token else None
        if identity is None:
            raise ApiError(401, 'Unauthorized', 'Unauthorized')
        return identity

    def _apply_faults(self, verb: str, resource: str, arrived: float) -> bool:
        decision = self.api.faults.decide(verb, resource)
        if decision.delay:
            time.sleep(decision.delay)
        if decision.drop:
            self.api.log.record_fault(verb, resource, 'drop', arrived)
            self._drop()
            return False
        if decision.status is not None:
            self.api.log.record_fault(verb, resource, str(decision.status), arrived)
            message = {429: 'Too many requests, please try again later.',
                       503: 'the server is currently unable to handle the request'}.get(
                decision.status, 'Internal error occurred: injected fault')
            raise ApiError(decision.status, message, retry_after=decision.retry_after)
        return True

    # -- discovery -------------------------------------------------------------------------------------

    def _discovery(self, path: str) -> Any:
        registry = self.api.store.registry
        if path in ('/healthz', '/livez', '/readyz'):
            return 'ok'
        if path == '/version':
            return KUBERNETES_VERSION
        if path == '/api':
            return {'kind': 'APIVersions', 'versions': ['v1'], 'serverAddressByClientCIDRs': [
                {'clientCIDR': '0.0.0.0/0', 'serverAddress': f'127.0.0.1:{self.api.port}'}]}
        if path == '/api/v1':
            return _resource_list('v1', [t for t in registry.all() if t.group == '' and t.version == 'v1'])
        hidden = self.api.hidden_versions
        groups = {name: [v for v in versions if f'{name}/{v}' not in hidden]
                  for name, versions in registry.groups().items()}
        if path == '/apis':
            return {'kind': 'APIGroupList', 'apiVersion': 'v1',
                    'groups': [_group(name, versions) for name, versions in sorted(groups.items())
                               if name and versions]}
        parts = path.strip('/').split('/')
        if parts[0] == 'apis' and len(parts) == 2:
            versions = groups.get(parts[1])
            if not versions:
                raise ApiError(404, 'the server could not find the requested resource', 'NotFound')
            return {'kind': 'APIGroup', 'apiVersion': 'v1', **_group(parts[1], versions)}
        if parts[0] == 'apis' and len(parts) == 3:
            types = [t for t in registry.all() if t.group == parts[1] and t.version == parts[2] and
                     f'{parts[1]}/{parts[2]}' not in hidden]
            if not types:
                raise ApiError(404, 'the server could not find the requested resource', 'NotFound')
            return _resource_list(f'{parts[1]}/{parts[2]}', types)
        if path.startswith('/openapi'):
            raise ApiError(404, 'the server could not find the requested resource', 'NotFound')
        return None

    def _resolve(self, path: str) -> _Target:
        parts = path.strip('/').split('/')
        not_found = ApiError(404, 'the server could not find the requested resource', 'NotFound')
        if parts[0] == 'api' and len(parts) >= 3:
            group, version, rest = '', parts[1], parts[2:]
        elif parts[0] == 'apis' and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise not_found
        if f'{group}/{version}' in self.api.hidden_versions:
            raise not_found
        registry = self.api.store.registry
        namespace = None
        if rest[0] == 'namespaces' and len(rest) >= 3 and registry.by_path(group, version, rest[2]):
            namespace, rest = rest[1], rest[2:]
        resource_type = registry.by_path(group, version, rest[0])
        if resource_type is None or len(rest) > 3:
            raise not_found
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource and (subresource != 'status' or not resource_type.has_status):
            raise not_found
        if namespace and not resource_type.namespaced:
            raise not_found
        return _Target(resource_type, namespace, name, subresource)

    # -- verbs -----------------------------------------------------------------------------------------

    def _handle(self, verb: str, target: _Target, params: dict[str, str], body: bytes, content_type: str) -> None:
        store = self.api.store
        resource_type = target.resource_type
        if verb == 'get':
            assert target.name
            self._send(200, _present(resource_type, store.get(resource_type, target.namespace, target.name,
                                                              copy_obj=False)))
        elif verb == 'list':
            self._list(target, params)
        elif verb == 'create':
            obj = _incoming(resource_type, self._json_body(body))
            self._send(201, _present(resource_type, store.create(resource_type, obj, target.namespace)))
        elif verb == 'update':
            assert target.name
            obj = _incoming(resource_type, self._json_body(body))
            updated = store.update(resource_type, obj, namespace=target.namespace, name=target.name,
                                   subresource=target.subresource)
            self._send(200, _present(resource_type, updated))
        elif verb == 'patch':
            assert target.name
            self._send(200, _present(resource_type, self._patch(target, body, content_type)))
        elif verb == 'delete':
            assert target.name
            self._send(200, _present(resource_type, store.delete(resource_type, target.namespace, target.name)))
        elif verb == 'deletecollection':
            items, _, _, _ = store.list_objects(resource_type, target.namespace,
                                        label_selector=params.get('labelSelector', ''),
                                        field_selector=params.get('fieldSelector', ''))
            for item in items:
                store.delete(resource_type, item['metadata'].get('namespace'), item['metadata']['name'])
            self._send(200, _list_payload(resource_type, [], store.resource_version, '', None))
        else:
            raise ApiError(405, f'{verb} is not supported', 'MethodNotAllowed')

    def _list(self, target: _Target, params: dict[str, str]) -> None:
        resource_type = target.resource_type
        field_selector = params.get('fieldSelector', '')
        if resource_type.group == 'events.k8s.io':
            field_selector = event_formats.core_field_selector(field_selector)
        try:
            limit = int(params.get('limit') or 0)
        except ValueError as error:
            raise ApiError.bad_request(f'invalid limit: {params.get("limit")}') from error
        items, rv, token, remaining = self.api.store.list_objects(
            resource_type, target.namespace, label_selector=params.get('labelSelector', ''),
            field_selector=field_selector, limit=limit, continue_token=params.get('continue', ''),
            copy_obj=False)
        self._send(200, _list_payload(resource_type, items, rv, token, remaining))

    def _patch(self, target: _Target, body: bytes, content_type: str) -> Obj:
        assert target.name
        patch = self._json_body(body)
        media_type = content_type.split(';')[0].strip()
        resource_type = target.resource_type
        if media_type == 'application/json-patch+json':
            def mutate(obj: Obj) -> Obj:
                return patches.json_patch(_present(resource_type, obj), patch)
        elif media_type in ('application/merge-patch+json', 'application/strategic-merge-patch+json'):
            # Strategic merge is served as a JSON merge patch: enough for annotations and labels.
            def mutate(obj: Obj) -> Obj:
                return patches.merge_patch(_present(resource_type, obj), patch)
        else:
            raise ApiError(415, f'the body of the request was in an unknown format - accepted media types '
                                f'include: application/json-patch+json, application/merge-patch+json, '
                                f'application/strategic-merge-patch+json (got {media_type})')

        def mutate_stored(obj: Obj) -> Obj:
            return _incoming(resource_type, mutate(obj))

        if isinstance(patch, dict):
            sent_rv = (patch.get('metadata') or {}).get('resourceVersion')
            current = self.api.store.get(resource_type, target.namespace, target.name, copy_obj=False)
            if sent_rv and sent_rv != current['metadata']['resourceVersion']:
                raise ApiError.conflict(resource_type.group_resource, target.name)
        return self.api.store.patch(resource_type, target.namespace, target.name, mutate_stored,
                                    subresource=target.subresource)

    # -- watch -----------------------------------------------------------------------------------------

    def _watch(self, target: _Target, params: dict[str, str]) -> None:
        api = self.api
        store = api.store
        resource_type = target.resource_type
        field_selector = params.get('fieldSelector', '')
        if resource_type.group == 'events.k8s.io':
            field_selector = event_formats.core_field_selector(field_selector)
        label_match = selectors.parse_label_selector(params.get('labelSelector', ''))
        field_match = selectors.parse_field_selector(field_selector, field_selectors_for(resource_type))
        if target.name:
            name_match = selectors.parse_field_selector(f'metadata.name={target.name}', selectors.BASE_FIELDS)
        else:
            name_match = None

        def matches(obj: Obj | None) -> bool:
            if obj is None:
                return False
            if target.namespace and obj['metadata'].get('namespace') != target.namespace:
                return False
            return label_match(obj) and field_match(obj) and (name_match is None or name_match(obj))

        since = params.get('resourceVersion', '')
        initial: list[Obj] = []
        if since in ('', '0'):
            items, last, _, _ = store.list_objects(resource_type, target.namespace, label_selector=params.get(
                'labelSelector', ''), field_selector=field_selector, copy_obj=False)
            initial = [item for item in items if matches(item)]
        else:
            try:
                last = int(since)
            except ValueError as error:
                raise ApiError.bad_request(f'invalid resource version: {since}') from error
        timeout = float(params.get('timeoutSeconds') or 1800)
        bookmarks = params.get('allowWatchBookmarks') in ('true', '1')

        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Transfer-Encoding', 'chunked')
        self.send_header('Cache-Control', 'no-cache, private')
        self.end_headers()
        self.close_connection = True
        try:
            if since not in ('', '0') and api.faults.take_watch_expiry():
                raise ApiError.gone(f'too old resource version: {since} ({store.resource_version})')
            for event in self._watch_events(resource_type, initial, last, matches, timeout, bookmarks):
                self._chunk(json.dumps(event, separators=(',', ':')).encode() + b'\n')
        except ApiError as error:
            self._chunk(json.dumps({'type': 'ERROR', 'object': error.status()}).encode() + b'\n')
        except (BrokenPipeError, ConnectionResetError, OSError):
            return
        try:
            self.wfile.write(b'0\r\n\r\n')
            self.wfile.flush()
        except OSError:
            pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f'{len(data):x}\r\n'.encode() + data + b'\r\n')
        self.wfile.flush()

    def _watch_events(self, resource_type: ResourceType, initial: list[Obj], last: int, matches: Any,
                      timeout: float, bookmarks: bool) -> Iterator[dict[str, Any]]:
        api = self.api
        started = time.monotonic()
        deadline = started + timeout
        cut_events = api.faults.watch_cut_events
        cut_seconds = api.faults.watch_cut_seconds
        if cut_seconds is not None:
            deadline = min(deadline, started + cut_seconds)
        sent = 0
        for obj in initial:
            yield {'type': 'ADDED', 'object': _present(resource_type, obj)}
            sent += 1
            if cut_events is not None and sent >= cut_events:
                return
        next_bookmark = time.monotonic() + api.bookmark_interval
        storage = resource_type.storage_key
        while not api._stopping.is_set():
            for change in api.store.changes_after(last):
                last = change.rv
                if change.storage != storage:
                    continue
                now_matches, old_matched = matches(change.obj), matches(change.old)
                if change.type == 'DELETED':
                    event_type = 'DELETED' if (now_matches or old_matched) else None
                elif now_matches:
                    event_type = 'MODIFIED' if old_matched else 'ADDED'
                else:
                    event_type = 'DELETED' if old_matched else None  # it left the selector
                if event_type is None:
                    continue
                yield {'type': event_type, 'object': _present(resource_type, change.obj)}
                sent += 1
                if cut_events is not None and sent >= cut_events:
                    return
            now = time.monotonic()
            if now >= deadline:
                return
            if bookmarks and now >= next_bookmark:
                next_bookmark = now + api.bookmark_interval
                yield {'type': 'BOOKMARK', 'object': {
                    'kind': resource_type.kind, 'apiVersion': resource_type.api_version,
                    'metadata': {'resourceVersion': str(last),
                                 'annotations': {'k8s.io/initial-events-end': 'true'}}}}
            wait = min(deadline, next_bookmark if bookmarks else deadline) - time.monotonic()
            with api.store.condition:
                if api.store.resource_version <= last and not api._stopping.is_set():
                    api.store.condition.wait(max(0.0, min(wait, 1.0)))


def _verb(method: str, target: _Target, params: dict[str, str]) -> str:
    if method == 'GET':
        if params.get('watch') in ('1', 'true'):
            return 'watch'
        return 'get' if target.name else 'list'
    if method == 'POST':
        if target.name:
            raise ApiError(405, 'POST is not allowed on a named resource', 'MethodNotAllowed')
        return 'create'
    if not target.name:
        if method == 'DELETE':
            return 'deletecollection'
        raise ApiError(405, f'{method} is not allowed on a collection', 'MethodNotAllowed')
    return {'PUT': 'update', 'PATCH': 'patch', 'DELETE': 'delete'}[method]


def _forbidden(identity: Identity, verb: str, target: _Target) -> ApiError:
    resource_type = target.resource_type
    subject = f'{resource_type.group_resource} "{target.name}"' if target.name else resource_type.group_resource
    where = f' in the namespace "{target.namespace}"' if target.namespace else (
        ' at the cluster scope' if not target.name or not resource_type.namespaced else '')
    message = (f'{subject} is forbidden: User "{identity.user}" cannot {verb} resource "{target.resource}" '
               f'in API group "{resource_type.group}"{where}')
    return ApiError(403, message, 'Forbidden', details={'name': target.name or '', 'group': resource_type.group,
                                                       'kind': resource_type.plural})


def _present(resource_type: ResourceType, obj: Obj) -> Obj:
    """The stored object as the requested API version shows it."""
    if resource_type.group == 'events.k8s.io':
        return event_formats.to_events_v1(obj)
    if obj.get('apiVersion') != resource_type.api_version:
        return {**obj, 'apiVersion': resource_type.api_version}
    return obj


def _incoming(resource_type: ResourceType, obj: Any) -> Obj:
    if not isinstance(obj, dict):
        raise ApiError.bad_request('the body of the request must be a JSON object')
    if resource_type.group == 'events.k8s.io':
        obj = event_formats.to_core(obj)
    kind = obj.get('kind')
    if kind and kind != resource_type.kind:
        raise ApiError.bad_request(f'the kind of the body ({kind}) does not match the resource '
                                   f'({resource_type.kind})')
    return obj


def _list_payload(resource_type: ResourceType, items: list[Obj], rv: int, token: str, remaining: int | None
                  ) -> dict[str, Any]:
    metadata: dict[str, Any] = {'resourceVersion': str(rv)}
    if token:
        metadata['continue'] = token
    if remaining is not None:
        metadata['remainingItemCount'] = remaining
    return {'kind': f'{resource_type.kind}List', 'apiVersion': resource_type.api_version, 'metadata': metadata,
            'items': [_present(resource_type, item) for item in items]}


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{'groupVersion': f'{name}/{version}', 'version': version} for version in versions]
    return {'name': name, 'versions': entries, 'preferredVersion': entries[0]}


def _resource_list(group_version: str, types: list[ResourceType]) -> dict[str, Any]:
    resources = []
    for resource_type in sorted(types, key=lambda t: t.plural):
        if resource_type.storage_group is not None and resource_type.group != resource_type.storage_group and \
                resource_type.group == '':
            continue
        entry: dict[str, Any] = {
            'name': resource_type.plural, 'singularName': resource_type.singular,
            'namespaced': resource_type.namespaced, 'kind': resource_type.kind,
            'verbs': list(resource_type.verbs),
        }
        if resource_type.short_names:
            entry['shortNames'] = list(resource_type.short_names)
        if resource_type.categories:
            entry['categories'] = list(resource_type.categories)
        resources.append(entry)
        if resource_type.has_status:
            resources.append({'name': f'{resource_type.plural}/status', 'singularName': '',
                              'namespaced': resource_type.namespaced, 'kind': resource_type.kind,
                              'verbs': list(_SUBRESOURCE_VERBS)})
    return {'kind': 'APIResourceList', 'apiVersion': 'v1', 'groupVersion': group_version, 'resources': resources}
