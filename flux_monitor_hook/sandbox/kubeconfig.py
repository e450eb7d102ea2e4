"""The kubeconfig and TLS material for a running sandbox."""
from __future__ import annotations

import base64
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONTEXT = 'flux-sandbox'


@dataclass(frozen=True)
class TlsMaterial:
    server_context: ssl.SSLContext
    ca_pem: bytes


def make_tls() -> TlsMaterial:
    try:
        import trustme
    except ImportError as error:
        raise RuntimeError("--tls needs the 'trustme' package: pip install 'flux_monitor_hook[tls]'") from error
    authority = trustme.CA()
    certificate = authority.issue_cert('127.0.0.1', 'localhost')
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    return TlsMaterial(context, authority.cert_pem.bytes())


def kubeconfig_document(server: str, token: str, ca_pem: bytes | None = None,
                        namespace: str = 'flux-system') -> dict[str, Any]:
    cluster: dict[str, Any] = {'server': server}
    if ca_pem is not None:
        cluster['certificate-authority-data'] = base64.b64encode(ca_pem).decode()
    return {
        'apiVersion': 'v1',
        'kind': 'Config',
        'clusters': [{'name': CONTEXT, 'cluster': cluster}],
        'users': [{'name': CONTEXT, 'user': {'token': token}}],
        'contexts': [{'name': CONTEXT, 'context': {'cluster': CONTEXT, 'user': CONTEXT, 'namespace': namespace}}],
        'current-context': CONTEXT,
        'preferences': {},
    }


def write_kubeconfig(path: Path, document: dict[str, Any]) -> None:
    """Write atomically and readable only by the owner: it holds a bearer token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + '.partial')
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, 'w') as stream:
        yaml.safe_dump(document, stream, sort_keys=False)
    os.replace(partial, path)
