"""The cluster edge: kubeconfig, discovery of the Flux APIs, list and watch with retries, triggering.

Everything that talks to a Kubernetes API server lives here, and only here is the kubernetes client
imported (it costs about a quarter of a second).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

import tenacity
import urllib3
import yaml

from flux_monitor_hook import exit_codes
from flux_monitor_hook.errors import UserError
from flux_monitor_hook.git_urls import redact_text

Obj = dict[str, Any]

# Flux kinds we follow, with the API versions to try, newest first (older Flux served the betas).
FLUX_APIS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    'GitRepository': ('source.toolkit.fluxcd.io', 'gitrepositories', ('v1', 'v1beta2')),
    'OCIRepository': ('source.toolkit.fluxcd.io', 'ocirepositories', ('v1', 'v1beta2')),
    'Bucket': ('source.toolkit.fluxcd.io', 'buckets', ('v1', 'v1beta2')),
    'HelmChart': ('source.toolkit.fluxcd.io', 'helmcharts', ('v1', 'v1beta2')),
    'ExternalArtifact': ('source.toolkit.fluxcd.io', 'externalartifacts', ('v1',)),
    'ArtifactGenerator': ('source.extensions.fluxcd.io', 'artifactgenerators', ('v1beta1',)),
    'Kustomization': ('kustomize.toolkit.fluxcd.io', 'kustomizations', ('v1', 'v1beta2')),
    'HelmRelease': ('helm.toolkit.fluxcd.io', 'helmreleases', ('v2', 'v2beta2', 'v2beta1')),
    'FluxInstance': ('fluxcd.controlplane.io', 'fluxinstances', ('v1',)),
}
REQUESTED_AT = 'reconcile.fluxcd.io/requestedAt'


@dataclass(frozen=True)
class Api:
    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}'


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    delay: float = 1.0  # the first backoff; doubles with jitter up to 30 s
    deadline: float | None = None  # time.monotonic() after which nothing is retried


class ApiFailure(Exception):
    """A request that failed for good; `permanent` when retrying cannot help (401, 403, 404)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None,
                 cluster: str | None = None, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.cluster = cluster  # the kubeconfig context, when known: several clusters may be followed
        self._permanent = permanent  # e.g. an untrusted certificate, which no retry makes trusted

    @property
    def permanent(self) -> bool:
        return self._permanent or (self.status is not None and self.status < 500 and self.status != 429)

    @property
    def gone(self) -> bool:
        return self.status == 410


def _failure(error: BaseException, what: str, cluster: str | None = None) -> ApiFailure:
    from kubernetes.client.exceptions import ApiException

    if isinstance(error, ApiFailure):
        return error
    if isinstance(error, ApiException) and not error.status:
        # The client's own failure, with no answer from the server: it wraps TLS errors as status 0.
        text = ' '.join(str(error.reason or '').split())
        untrusted = 'CERTIFICATE_VERIFY_FAILED' in text or 'certificate verify failed' in text
        return ApiFailure(f'{what}: {redact_text(text) or "TLS error"}', cluster=cluster, permanent=untrusted)
    if isinstance(error, ApiException):
        retry_after = None
        headers = error.headers or {}
        if headers.get('Retry-After'):
            try:
                retry_after = float(headers['Retry-After'])
            except ValueError:
                retry_after = None
        message = str(error.reason or '')
        try:
            message = json.loads(error.body or '{}').get('message') or message
        except (ValueError, AttributeError):
            pass
        return ApiFailure(f'{what}: {error.status} {" ".join(message.split())}', error.status, retry_after, cluster)
    text = ' '.join(str(error).split())
    untrusted = 'CERTIFICATE_VERIFY_FAILED' in text or 'certificate verify failed' in text
    return ApiFailure(f'{what}: {redact_text(text) or type(error).__name__}', cluster=cluster, permanent=untrusted)


def _transient(error: BaseException) -> bool:
    return isinstance(error, ApiFailure) and not error.permanent


BACKOFF_MAX = 30.0


def backoff(policy: RetryPolicy, retry: int, retry_after: float | None = None) -> float:
    """How long to wait before retry number `retry` (1 for the first): exponential from the policy's delay,
    with jitter between half and all of it (so that N retries always span at least half of
    delay * (2^N - 1): with the defaults, an outage of 15 s is always ridden out), at least a 429's
    Retry-After, and never past the deadline."""
    exponential = min(BACKOFF_MAX, policy.delay * 2 ** (retry - 1))
    wait = exponential * random.uniform(0.5, 1.0)
    if retry_after is not None:
        wait = max(wait, retry_after)
    if policy.deadline is not None:
        wait = min(wait, max(0.0, policy.deadline - time.monotonic()))
    return wait


def request_timeout(policy: RetryPolicy, limit: float) -> float:
    """A client-side timeout for one request: `limit` seconds, but not past the policy's deadline (a server
    that accepts connections and never answers must not hold the wait beyond its timeout)."""
    if policy.deadline is None:
        return limit
    return max(1.0, min(limit, policy.deadline - time.monotonic()))


def call(function: Callable[[], Any], what: str, policy: RetryPolicy,
         on_retry: Callable[[str], None] | None = None) -> Any:
    """Run one API call, retrying transient failures (connection errors, 5xx, 429 with its Retry-After)
    with exponential backoff and jitter, never past the policy's deadline."""
    from kubernetes.client.exceptions import ApiException

    def attempt() -> Any:
        try:
            return function()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            raise _failure(error, what) from error

    def wait(retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome else None
        retry_after = error.retry_after if isinstance(error, ApiFailure) else None
        return backoff(policy, retry_state.attempt_number, retry_after)

    def stop(retry_state: tenacity.RetryCallState) -> bool:
        if retry_state.attempt_number > policy.attempts:
            return True
        return policy.deadline is not None and time.monotonic() >= policy.deadline

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        if on_retry and retry_state.outcome:
            on_retry(f'{retry_state.outcome.exception()} (retry {retry_state.attempt_number})')

    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception(_transient), wait=wait, stop=stop,
                                 before_sleep=before_sleep, reraise=True)
    return retrying(attempt)


# -- connecting ---------------------------------------------------------------------------------------

@dataclass
class Cluster:
    name: str  # the kubeconfig context
    api_client: Any
    apis: dict[str, Api] = field(default_factory=dict)

    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client)


def kubeconfig_path(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get('KUBECONFIG', '')
    first = env.split(os.pathsep)[0] if env else ''
    return Path(first) if first else Path.home() / '.kube' / 'config'


def contexts_in(path: Path) -> tuple[list[str], str | None]:
    """Context names and the current context of a kubeconfig file (checked before the client reads it)."""
    if not path.is_file():
        raise UserError(f'no kubeconfig at {path}; set KUBECONFIG, pass --kubeconfig, or set cluster.kubeconfig '
                        'in .flux-monitor.yaml', exit_codes.UNAVAILABLE)
    try:
        document = yaml.safe_load(path.read_text(encoding='utf-8', errors='replace'))
    except yaml.YAMLError as error:
        mark = getattr(error, 'problem_mark', None)
        where = f':{mark.line + 1}' if mark else ''
        raise UserError(f'{path}{where}: the kubeconfig is not valid YAML; fix or regenerate it (e.g. with your '
                        "cloud provider's get-credentials command)", exit_codes.UNAVAILABLE) from None
    if not isinstance(document, dict) or not isinstance(document.get('contexts') or [], list):
        raise UserError(f'{path}: not a kubeconfig (no contexts list); fix or regenerate it', exit_codes.UNAVAILABLE)
    names = [str(item.get('name')) for item in document.get('contexts') or [] if isinstance(item, dict)]
    current = document.get('current-context') or None
    return names, str(current) if current else None


def connect(kubeconfig: Path | None, context: str | None, *, timeout: float = 10.0) -> Cluster:
    from kubernetes import client
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    path = kubeconfig_path(kubeconfig)
    names, current = contexts_in(path)
    chosen = context or current
    if not chosen:
        raise UserError(f'{path} has no current context; pass --context with one of: {", ".join(names) or "none"}')
    if chosen not in names:
        raise UserError(f"context '{chosen}' is not in {path}; use one of: {', '.join(names) or 'none'}")
    configuration = client.Configuration()
    # The client logs (rather than raises) a failed exec credential plugin, then goes on without a token: its
    # messages are kept out of stderr and turned into the one-line error they deserve.
    logged = _Collect()
    root_logger = logging.getLogger()
    root_logger.addHandler(logged)
    try:
        config.load_kube_config(config_file=str(path), context=chosen, client_configuration=configuration,
                                persist_config=False)
    except ConfigException as error:
        raise UserError(f"cannot use context '{chosen}' of {path}: {redact_text(str(error)).splitlines()[0]}",
                        exit_codes.UNAVAILABLE) from None
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise UserError(f"cannot use context '{chosen}' of {path}: {redact_text(str(error))}",
                        exit_codes.UNAVAILABLE) from None
    finally:
        root_logger.removeHandler(logged)
    if logged.messages:  # only the credential plugins log errors while loading
        detail = ' '.join(redact_text(logged.messages[0]).split())[:300]
        raise UserError(f"cannot get credentials for context '{chosen}' of {path}: its credential plugin failed "
                        f"({detail}); log in again with your provider's tool, or fix the user's exec section",
                        exit_codes.UNAVAILABLE)
    configuration.retries = False  # tenacity retries, within our deadline, not urllib3 behind our back
    api_client = client.ApiClient(configuration)
    api_client.user_agent = 'flux-monitor'
    return Cluster(chosen, api_client)


class _Collect(logging.Handler):
    """Keeps the errors the kubernetes client logs while it loads a kubeconfig."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def discover(cluster: Cluster, policy: RetryPolicy) -> dict[str, Api]:
    """The served version of each Flux kind (newest preferred), from the API group list."""
    from kubernetes import client

    def fetch() -> Any:
        return client.ApisApi(cluster.api_client).get_api_versions(_request_timeout=request_timeout(policy, 30))

    try:
        groups = call(fetch, 'listing API groups', policy)
    except ApiFailure as failure:
        raise unavailable(cluster, failure) from None
    served = {group.name: {v.version for v in group.versions} for group in groups.groups}
    found = {}
    for kind, (group, plural, versions) in FLUX_APIS.items():
        for version in versions:
            if version in served.get(group, set()):
                found[kind] = Api(kind, group, version, plural)
                break
    cluster.apis = found
    return found


def unavailable(cluster: Cluster, failure: ApiFailure) -> UserError:
    host = getattr(cluster.api_client.configuration, 'host', '')
    if failure.status == 401:
        return UserError(f'cluster {cluster.name} ({host}) rejected the credentials (401 Unauthorized); refresh them, '
                         'e.g. log in again or regenerate the kubeconfig', exit_codes.UNAVAILABLE)
    if failure.status == 403:
        return UserError(f'cluster {cluster.name}: {failure}; ask for read access to the Flux resources (the '
                         'ClusterRole in docs/rbac.yaml of flux-monitor-hook lists them)', exit_codes.UNAVAILABLE)
    hint = 'check that the cluster is up and reachable'
    if 'CERTIFICATE_VERIFY_FAILED' in str(failure) or 'certificate verify failed' in str(failure):
        hint = "the server's certificate is not trusted: check certificate-authority-data in the kubeconfig"
    return UserError(f'cluster {cluster.name} ({host}) is unavailable: {failure}; {hint}', exit_codes.UNAVAILABLE)


# -- reading ------------------------------------------------------------------------------------------

def list_objects(cluster: Cluster, api: Api, namespace: str | None, policy: RetryPolicy) -> tuple[list[Obj], str]:
    """Every object of a kind (all namespaces when namespace is None), following continue tokens."""
    custom = cluster.custom()
    items: list[Obj] = []
    token = ''
    resource_version = ''
    while True:
        def page(continue_token: str = token) -> Any:
            kwargs: dict[str, Any] = {'limit': 500, '_request_timeout': request_timeout(policy, 30)}
            if continue_token:
                kwargs['_continue'] = continue_token
            if namespace:
                return custom.list_namespaced_custom_object(api.group, api.version, namespace, api.plural, **kwargs)
            return custom.list_cluster_custom_object(api.group, api.version, api.plural, **kwargs)

        where = f' in {namespace}' if namespace else ''
        result = call(page, f'listing {api.plural}{where}', policy)
        for item in result.get('items') or []:
            item.setdefault('kind', api.kind)
            item.setdefault('apiVersion', api.api_version)
            items.append(item)
        metadata = result.get('metadata') or {}
        resource_version = resource_version or str(metadata.get('resourceVersion') or '')
        token = str(metadata.get('continue') or '')
        if not token:
            return items, resource_version


def list_group(cluster: Cluster, group: str, version: str, plural: str, namespace: str, policy: RetryPolicy,
               **selectors: str) -> list[Obj]:
    """A namespaced list of any grouped kind (apps Deployments, events.k8s.io Events) as plain dicts."""
    def fetch() -> Any:
        return cluster.custom().list_namespaced_custom_object(group, version, namespace, plural,
                                                              _request_timeout=request_timeout(policy, 30),
                                                              **selectors)

    result = call(fetch, f'listing {plural}.{group} in {namespace}', policy)
    return list(result.get('items') or [])


@dataclass(frozen=True)
class WatchEvent:
    cluster: str
    kind: str
    type: str  # ADDED, MODIFIED, DELETED, or SYNCED once a (re)list is complete
    obj: Obj


class Streams:
    """The watch responses being read, so that stopping can unblock the threads that read them.

    A daemon thread still blocked in a socket read when the interpreter exits wakes into a dying
    interpreter, and Python 3.11 can then abort the process (SIGABRT) after the verdict was printed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Any] = set()
        self._closed = False

    def add(self, response: Any) -> bool:
        """Track a response; False when already closed (the caller must not read it)."""
        with self._lock:
            if not self._closed:
                self._open.add(response)
            return not self._closed

    def discard(self, response: Any) -> None:
        with self._lock:
            self._open.discard(response)

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            responses = list(self._open)
        for response in responses:
            _shutdown(response)


def _shutdown(response: Any) -> None:
    """Make a blocked read of this response return: shut down the socket (closing it would not wake it)."""
    try:
        response.shutdown()  # urllib3 >= 2.3
        return
    except (AttributeError, NotImplementedError, ValueError, RuntimeError, OSError):
        pass
    sock = getattr(getattr(response, '_connection', None), 'sock', None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _open_watch(cluster: Cluster, api: Api, namespace: str | None, resource_version: str) -> Any:
    """The raw (unread) response of a watch request, so that Streams can shut it down."""
    custom = cluster.custom()
    kwargs: dict[str, Any] = {'watch': True, 'resource_version': resource_version, 'allow_watch_bookmarks': True,
                              'timeout_seconds': 300, '_request_timeout': (10, 330), '_preload_content': False}
    if namespace:
        return custom.list_namespaced_custom_object(api.group, api.version, namespace, api.plural, **kwargs)
    return custom.list_cluster_custom_object(api.group, api.version, api.plural, **kwargs)


def _watch_events(response: Any) -> Iterator[Obj]:
    """The events of a watch response, one JSON object a line."""
    from kubernetes.watch.watch import iter_resp_lines

    for line in iter_resp_lines(response):
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def follow(cluster: Cluster, api: Api, namespace: str | None, events: queue.Queue[WatchEvent | ApiFailure],
           stop: threading.Event, policy: RetryPolicy, on_retry: Callable[[str], None],
           streams: Streams | None = None) -> None:
    """List, then watch from the list's resourceVersion; relist on 410 (reporting what disappeared), and
    resume after dropped streams. Runs until stop is set; a permanent failure is put on the queue, and so is
    a transient one once it has come back more than policy.attempts times in a row (with backoff between)."""
    from kubernetes.client.exceptions import ApiException

    streams = streams if streams is not None else Streams()
    known: dict[tuple[str, str], Obj] = {}
    resource_version = ''
    failed = 0  # transient failures in a row, since the last event or cleanly ended stream

    def retry_or_give_up(failure: ApiFailure) -> bool:
        """Back off before the next attempt (True), or put the failure on the queue when retries are used up."""
        nonlocal failed
        failed += 1
        if failed > policy.attempts:
            failure.cluster = failure.cluster or cluster.name
            events.put(failure)
            return False
        on_retry(str(failure))
        stop.wait(backoff(policy, failed, failure.retry_after))
        return True

    while not stop.is_set():
        try:
            if not resource_version:
                items, resource_version = list_objects(cluster, api, namespace, policy)
                current = {_identity(item): item for item in items}
                for identity, obj in known.items():
                    if identity not in current:
                        events.put(WatchEvent(cluster.name, api.kind, 'DELETED', obj))
                for item in items:
                    events.put(WatchEvent(cluster.name, api.kind, 'ADDED', item))
                known = current
                events.put(WatchEvent(cluster.name, api.kind, 'SYNCED', {}))
            response = _open_watch(cluster, api, namespace, resource_version)
            if not streams.add(response):
                response.release_conn()
                return
            stream_error: ApiFailure | None = None
            try:
                for event in _watch_events(response):
                    if stop.is_set():
                        return
                    obj = event.get('object') or {}
                    event_type = event.get('type', '')
                    if event_type == 'ERROR':
                        status = obj.get('code')
                        if status == 410:
                            resource_version = ''
                            break
                        stream_error = ApiFailure(f'watching {api.plural}: {obj.get("message")}',
                                                  status if isinstance(status, int) else None, cluster=cluster.name)
                        break
                    failed = 0
                    metadata = obj.get('metadata') or {}
                    if metadata.get('resourceVersion'):
                        resource_version = str(metadata['resourceVersion'])
                    if event_type == 'BOOKMARK':
                        continue
                    obj.setdefault('kind', api.kind)
                    obj.setdefault('apiVersion', api.api_version)
                    if event_type == 'DELETED':
                        known.pop(_identity(obj), None)
                    else:
                        known[_identity(obj)] = obj
                    events.put(WatchEvent(cluster.name, api.kind, event_type, obj))
                else:
                    failed = 0  # the server ended the stream (its timeout): resume at once
            finally:
                streams.discard(response)
                response.release_conn()
            if stream_error is not None:
                if stream_error.permanent:
                    events.put(stream_error)
                    return
                if not retry_or_give_up(stream_error):
                    return
        except ApiException as error:
            failure = _failure(error, f'watching {api.plural}', cluster.name)
            if failure.gone:
                resource_version = ''
                continue
            if failure.permanent:
                events.put(failure)
                return
            if not retry_or_give_up(failure):
                return
        except ApiFailure as failure:
            if failure.gone:
                resource_version = ''
                continue
            failure.cluster = failure.cluster or cluster.name
            events.put(failure)
            return
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
            if stop.is_set():
                return
            broken = _failure(error, f'watching {api.plural}', cluster.name)
            if broken.permanent:
                events.put(broken)
                return
            if not retry_or_give_up(broken):
                return


def _identity(obj: Obj) -> tuple[str, str]:
    metadata = obj.get('metadata') or {}
    return (str(metadata.get('namespace') or ''), str(metadata.get('name') or ''))


# -- writing ------------------------------------------------------------------------------------------

def now_rfc3339_nano() -> str:
    return datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def request_reconcile(cluster: Cluster, api: Api, namespace: str, name: str, token: str,
                      policy: RetryPolicy) -> None:
    """What `flux reconcile source` does: merge-patch the requestedAt annotation."""
    custom = cluster.custom()
    body = {'metadata': {'annotations': {REQUESTED_AT: token}}}

    def patch() -> Any:
        return custom.patch_namespaced_custom_object(api.group, api.version, namespace, api.plural, name, body,
                                                     _request_timeout=request_timeout(policy, 15))

    call(patch, f'requesting reconciliation of {api.kind}/{namespace}/{name}', policy)
