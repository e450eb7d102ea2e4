"""What `flux bootstrap` leaves in a cluster: flux-system, the controllers, the CRDs and the sync objects."""
from __future__ import annotations

from typing import Any

from flux_monitor_hook.sandbox.kinds import FLUX_KINDS
from flux_monitor_hook.sandbox.store import Store
from flux_monitor_hook.sandbox.store import now_rfc3339

Obj = dict[str, Any]

FLUX_VERSION = 'v2.7.3'
NAMESPACE = 'flux-system'
CONTROLLERS = ('source-controller', 'kustomize-controller', 'helm-controller', 'notification-controller')


def _type(store: Store, api_version: str, kind: str) -> Any:
    return store.resource_type_for(api_version, kind)


def install(store: Store, *, repo: str, branch: str, cluster_path: str, flux_instance: bool = False,
            git_interval: str | None = None) -> None:
    namespaces = _type(store, 'v1', 'Namespace')
    if store.try_get(namespaces, None, NAMESPACE) is None:
        store.create(namespaces, {'metadata': {'name': NAMESPACE, 'labels': {
            'app.kubernetes.io/instance': NAMESPACE, 'app.kubernetes.io/part-of': 'flux'}}})
    install_crds(store)
    for name in CONTROLLERS:
        install_controller(store, name)
    if flux_instance:
        install_flux_instance(store, repo=repo, branch=branch, cluster_path=cluster_path)
    store.apply(_type(store, 'source.toolkit.fluxcd.io/v1', 'GitRepository'), {
        'apiVersion': 'source.toolkit.fluxcd.io/v1', 'kind': 'GitRepository',
        'metadata': {'name': NAMESPACE, 'namespace': NAMESPACE},
        'spec': {'interval': git_interval or '1m0s', 'ref': {'branch': branch}, 'url': repo},
    })
    path = './' + cluster_path.strip().lstrip('./').rstrip('/') if cluster_path.strip('./') else './'
    store.apply(_type(store, 'kustomize.toolkit.fluxcd.io/v1', 'Kustomization'), {
        'apiVersion': 'kustomize.toolkit.fluxcd.io/v1', 'kind': 'Kustomization',
        'metadata': {'name': NAMESPACE, 'namespace': NAMESPACE},
        'spec': {'interval': '10m0s', 'path': path, 'prune': True,
                 'sourceRef': {'kind': 'GitRepository', 'name': NAMESPACE}},
    })


def install_crds(store: Store) -> None:
    """CRD objects for the Flux kinds the registry already serves, so clients can list them as usual."""
    crds = _type(store, 'apiextensions.k8s.io/v1', 'CustomResourceDefinition')
    for flux_kind in FLUX_KINDS:
        served = [t for t in store.registry.all() if t.group == flux_kind.group and t.plural == flux_kind.plural]
        versions = [{'name': t.version, 'served': True, 'storage': t.version == flux_kind.versions[0],
                     'subresources': {'status': {}}, 'schema': {'openAPIV3Schema': {
                         'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}}} for t in served]
        name = f'{flux_kind.plural}.{flux_kind.group}'
        if store.try_get(crds, None, name) is not None:
            continue
        store.create(crds, {
            'metadata': {'name': name, 'labels': {'app.kubernetes.io/part-of': 'flux',
                                                  'app.kubernetes.io/instance': NAMESPACE,
                                                  'app.kubernetes.io/version': FLUX_VERSION}},
            'spec': {'group': flux_kind.group, 'scope': 'Namespaced', 'versions': versions,
                     'names': {'kind': flux_kind.kind, 'listKind': f'{flux_kind.kind}List',
                               'plural': flux_kind.plural, 'singular': flux_kind.kind.lower(),
                               'shortNames': list(flux_kind.short_names),
                               'categories': list(flux_kind.categories)}},
        })
        current = store.get(crds, None, name)
        current['status'] = {
            'acceptedNames': current['spec']['names'], 'storedVersions': [flux_kind.versions[0]],
            'conditions': [{'type': 'Established', 'status': 'True', 'reason': 'InitialNamesAccepted',
                            'message': 'the initial names have been accepted',
                            'lastTransitionTime': now_rfc3339()}]}
        store.update(crds, current, subresource='status')


def install_controller(store: Store, name: str, *, ready: bool = True) -> None:
    deployments = _type(store, 'apps/v1', 'Deployment')
    labels = {'app.kubernetes.io/component': name, 'app.kubernetes.io/instance': NAMESPACE,
              'app.kubernetes.io/part-of': 'flux', 'app.kubernetes.io/version': FLUX_VERSION,
              'control-plane': 'controller'}
    store.apply(deployments, {
        'apiVersion': 'apps/v1', 'kind': 'Deployment',
        'metadata': {'name': name, 'namespace': NAMESPACE, 'labels': labels,
                     'annotations': {'sandbox.flux-monitor.io/rollout-seconds': '0'}},
        'spec': {'replicas': 1, 'selector': {'matchLabels': {'app': name}},
                 'template': {'metadata': {'labels': {'app': name}},
                              'spec': {'containers': [{'name': 'manager',
                                                       'image': f'ghcr.io/fluxcd/{name}:{FLUX_VERSION}'}]}}},
    })
    set_controller_ready(store, name, ready)


def set_controller_ready(store: Store, name: str, ready: bool) -> None:
    """Mark a controller Deployment available or not, as its pods would (for tests of Flux health)."""
    deployments = _type(store, 'apps/v1', 'Deployment')
    now = now_rfc3339()
    available = 1 if ready else 0

    def mutate(obj: Obj) -> None:
        obj['status'] = {
            'observedGeneration': obj['metadata'].get('generation', 1), 'replicas': 1, 'updatedReplicas': 1,
            'readyReplicas': available, 'availableReplicas': available,
            'conditions': [
                {'type': 'Available', 'status': 'True' if ready else 'False',
                 'reason': 'MinimumReplicasAvailable' if ready else 'MinimumReplicasUnavailable',
                 'message': 'Deployment has minimum availability.' if ready else
                 'Deployment does not have minimum availability.', 'lastTransitionTime': now, 'lastUpdateTime': now},
                {'type': 'Progressing', 'status': 'True', 'reason': 'NewReplicaSetAvailable',
                 'message': f'ReplicaSet "{name}-6d4b9c8f7b" has successfully progressed.',
                 'lastTransitionTime': now, 'lastUpdateTime': now},
            ],
        }
        if not ready:
            obj['status']['unavailableReplicas'] = 1

    store.set_status(deployments, NAMESPACE, name, mutate)


def install_flux_instance(store: Store, *, repo: str, branch: str, cluster_path: str) -> None:
    instances = _type(store, 'fluxcd.controlplane.io/v1', 'FluxInstance')
    store.apply(instances, {
        'apiVersion': 'fluxcd.controlplane.io/v1', 'kind': 'FluxInstance',
        'metadata': {'name': 'flux', 'namespace': NAMESPACE},
        'spec': {'distribution': {'version': '2.7.x', 'registry': 'ghcr.io/fluxcd'},
                 'components': list(CONTROLLERS),
                 'sync': {'kind': 'GitRepository', 'url': repo, 'ref': f'refs/heads/{branch}',
                          'path': cluster_path}},
    })
    revision = f'{FLUX_VERSION}@sha256:' + '0' * 64

    def mutate(obj: Obj) -> None:
        obj['status'] = {  # FluxInstanceStatus has no observedGeneration: only its conditions carry one
            'lastAppliedRevision': revision, 'lastAttemptedRevision': revision,
            'components': [{'name': name, 'repository': f'ghcr.io/fluxcd/{name}', 'tag': FLUX_VERSION,
                            'digest': 'sha256:' + '0' * 64} for name in CONTROLLERS],
            'conditions': [{'type': 'Ready', 'status': 'True', 'reason': 'ReconciliationSucceeded',
                            'message': 'Reconciliation finished in 2s', 'observedGeneration': 1,
                            'lastTransitionTime': now_rfc3339()}],
        }

    store.set_status(instances, NAMESPACE, 'flux', mutate)
