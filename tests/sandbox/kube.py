"""The official kubernetes client pointed at a sandbox, as the product and a user's script would use it."""
from __future__ import annotations

from pathlib import Path

from kubernetes import client
from kubernetes import config

from flux_monitor_hook.sandbox import Sandbox


def api_client(sandbox: Sandbox, kubeconfig: Path | None = None, retries: int | None = 0) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig or sandbox.kubeconfig_path),
                            client_configuration=configuration)
    configuration.retries = retries  # urllib3 must not hide injected faults behind its own retries
    return client.ApiClient(configuration)


KS_GROUP, KS_VERSION, KS_PLURAL = 'kustomize.toolkit.fluxcd.io', 'v1', 'kustomizations'


def kustomization(name: str, namespace: str = 'default', **spec: object) -> dict:
    return {
        'apiVersion': f'{KS_GROUP}/{KS_VERSION}', 'kind': 'Kustomization',
        'metadata': {'name': name, 'namespace': namespace},
        'spec': {'interval': '10m', 'path': './', 'prune': True,
                 'sourceRef': {'kind': 'GitRepository', 'name': 'missing'}, 'suspend': True, **spec},
    }
