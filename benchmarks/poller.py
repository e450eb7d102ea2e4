"""A model of how the flux CLI waits (../shared/flux-status-reference.md §4): GET each object every 2 s.

Usage: python -m benchmarks.poller --kubeconfig FILE [--interval 2] [--model kstatus|legacy] [--timeout S]
                                   [--revision SHA] [--trigger KIND/NS/NAME] KIND/NS/NAME ...

One JSON line per object when the model reaches a verdict on it: {"object", "result", "time"} with
result `ready` or `failed`; then {"type": "done", "requests": N, "unfinished": [...]}. Models:

- kstatus (flux >= 2.2): Current (Ready=True at the observed generation, not Reconciling) is success; only
  Stalled=True is a failure; Ready=False or Unknown is InProgress, so a failure that does not stall is polled
  until the timeout.
- legacy (flux 2.0-2.1): once Ready is not Unknown, True is success and False a failure.

With --revision, an object counts only once it reports that commit (the artifact, the applied revision, or a
chart version ending in its first 12 hex digits): `flux reconcile` waits for its own request to be handled.
With --trigger, the object is first annotated with reconcile.fluxcd.io/requestedAt, as `flux reconcile
source` does. Every poll is one GET on one kept-alive connection, as client-go does.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import ssl
import sys
import tempfile
import time
from datetime import datetime
from datetime import timezone
from typing import Any
from urllib.parse import urlsplit

import yaml

PATHS = {
    'GitRepository': ('source.toolkit.fluxcd.io/v1', 'gitrepositories'),
    'HelmChart': ('source.toolkit.fluxcd.io/v1', 'helmcharts'),
    'Kustomization': ('kustomize.toolkit.fluxcd.io/v1', 'kustomizations'),
    'HelmRelease': ('helm.toolkit.fluxcd.io/v2', 'helmreleases'),
}


class Client:
    def __init__(self, kubeconfig: str) -> None:
        with open(kubeconfig, encoding='utf-8') as stream:
            document = yaml.safe_load(stream)
        cluster = document['clusters'][0]['cluster']
        self.token = document['users'][0]['user']['token']
        url = urlsplit(cluster['server'])
        self.host, self.port, self.https = url.hostname or '127.0.0.1', url.port, url.scheme == 'https'
        self.context: ssl.SSLContext | None = None
        if self.https:
            with tempfile.NamedTemporaryFile('wb', suffix='.pem') as ca:
                ca.write(base64.b64decode(cluster['certificate-authority-data']))
                ca.flush()
                self.context = ssl.create_default_context(cafile=ca.name)
        self.connection: http.client.HTTPConnection | None = None
        self.requests = 0

    def _connect(self) -> http.client.HTTPConnection:
        if self.connection is None:
            if self.https:
                self.connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)
            else:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return self.connection

    def request(self, method: str, path: str, body: Any = None) -> Any:
        headers = {'Authorization': f'Bearer {self.token}', 'Accept': 'application/json',
                   'User-Agent': 'flux-cli-model'}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers['Content-Type'] = 'application/merge-patch+json'
        for attempt in range(2):
            connection = self._connect()
            try:
                self.requests += 1
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                return json.loads(payload) if response.status < 300 else None
            except (OSError, http.client.HTTPException):
                self.connection = None
                if attempt:
                    raise
        return None


def path_of(ref: str) -> str:
    kind, namespace, name = ref.split('/', 2)
    api, plural = PATHS[kind]
    return f'/apis/{api}/namespaces/{namespace}/{plural}/{name}'


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in (obj.get('status') or {}).get('conditions') or []:
        if item.get('type') == kind:
            return dict(item)
    return {}


def at_revision(obj: dict[str, Any], revision: str) -> bool:
    status = obj.get('status') or {}
    texts = [str((status.get('artifact') or {}).get('revision') or ''), str(status.get('lastAppliedRevision') or '')]
    history = status.get('history') or []
    if obj.get('kind') == 'HelmRelease':
        texts.append(str(status.get('lastAttemptedRevision') or ''))
        if history:
            texts.append(str(history[0].get('chartVersion') or ''))
    return any(revision in text or text.endswith(revision[:12]) for text in texts if text)


def verdict(obj: dict[str, Any], model: str, revision: str | None) -> str | None:
    generation_current = (obj.get('status') or {}).get('observedGeneration') == obj['metadata'].get('generation')
    ready = condition(obj, 'Ready')
    if model == 'legacy':
        if not generation_current or ready.get('status', 'Unknown') == 'Unknown':
            return None
        if ready['status'] == 'False':
            return 'failed'
        return 'ready' if revision is None or at_revision(obj, revision) else None
    if condition(obj, 'Stalled').get('status') == 'True':
        return 'failed'
    if not generation_current or condition(obj, 'Reconciling').get('status') == 'True':
        return None
    if ready.get('status') == 'True' and (revision is None or at_revision(obj, revision)):
        return 'ready'
    return None


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + '\n')
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--kubeconfig', required=True)
    parser.add_argument('--interval', type=float, default=2.0)
    parser.add_argument('--model', choices=('kstatus', 'legacy'), default='kstatus')
    parser.add_argument('--timeout', type=float, default=300.0)
    parser.add_argument('--revision')
    parser.add_argument('--trigger', action='append', default=[])
    parser.add_argument('objects', nargs='+')
    args = parser.parse_args(argv)
    client = Client(args.kubeconfig)
    deadline = time.monotonic() + args.timeout
    for ref in args.trigger:
        token = datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
        client.request('PATCH', path_of(ref), {'metadata': {'annotations': {'reconcile.fluxcd.io/requestedAt': token}}})
    pending = list(args.objects)
    try:
        while pending and time.monotonic() < deadline:
            next_poll = time.monotonic() + args.interval
            for ref in list(pending):
                obj = client.request('GET', path_of(ref))
                result = verdict(obj, args.model, args.revision) if obj else None
                if result is not None:
                    emit({'object': ref, 'result': result, 'time': time.time()})
                    pending.remove(ref)
            time.sleep(max(0.0, min(next_poll, deadline) - time.monotonic()))
    except KeyboardInterrupt:
        pass
    emit({'type': 'done', 'requests': client.requests, 'unfinished': pending})
    return 0 if not pending else 2


if __name__ == '__main__':
    raise SystemExit(main())
