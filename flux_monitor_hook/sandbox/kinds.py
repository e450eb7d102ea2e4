"""The resource types the sandbox API server serves: built-in kinds and compact Flux definitions.

The Flux definitions mirror the real CRDs (group, versions, names, scope, subresources); a test checks them
against ../shared/flux-crds so they cannot drift.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

ALL_VERBS = ('create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch')


@dataclass(frozen=True)
class ResourceType:
    group: str  # '' for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    # Several versions (and events in two groups) share one storage, as in a real API server.
    storage_group: str | None = None
    storage_plural: str | None = None
    verbs: tuple[str, ...] = ALL_VERBS

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        group = self.group if self.storage_group is None else self.storage_group
        return (group, self.storage_plural or self.plural)

    @property
    def group_resource(self) -> str:
        """`plural.group` as Kubernetes error messages name a resource."""
        return f'{self.plural}.{self.group}' if self.group else self.plural


def _builtin(
    group: str, version: str, kind: str, plural: str, namespaced: bool = True,
    short: Iterable[str] = (), status: bool = False, **kwargs: Any,
) -> ResourceType:
    return ResourceType(
        group=group, version=version, kind=kind, plural=plural, singular=kind.lower(),
        namespaced=namespaced, short_names=tuple(short), has_status=status, **kwargs,
    )


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin('', 'v1', 'Namespace', 'namespaces', namespaced=False, short=('ns',), status=True),
    _builtin('', 'v1', 'Event', 'events', short=('ev',)),
    _builtin('', 'v1', 'ConfigMap', 'configmaps', short=('cm',)),
    _builtin('', 'v1', 'Secret', 'secrets'),
    _builtin('', 'v1', 'ServiceAccount', 'serviceaccounts', short=('sa',)),
    _builtin('', 'v1', 'Service', 'services', short=('svc',), status=True, categories=('all',)),
    _builtin('', 'v1', 'Pod', 'pods', short=('po',), status=True, categories=('all',)),
    _builtin('', 'v1', 'PersistentVolumeClaim', 'persistentvolumeclaims', short=('pvc',), status=True),
    _builtin('apps', 'v1', 'Deployment', 'deployments', short=('deploy',), status=True, categories=('all',)),
    _builtin('apps', 'v1', 'StatefulSet', 'statefulsets', short=('sts',), status=True, categories=('all',)),
    _builtin('apps', 'v1', 'DaemonSet', 'daemonsets', short=('ds',), status=True, categories=('all',)),
    _builtin('batch', 'v1', 'Job', 'jobs', status=True, categories=('all',)),
    _builtin('batch', 'v1', 'CronJob', 'cronjobs', short=('cj',), status=True, categories=('all',)),
    _builtin('networking.k8s.io', 'v1', 'Ingress', 'ingresses', short=('ing',), status=True),
    _builtin('networking.k8s.io', 'v1', 'NetworkPolicy', 'networkpolicies', short=('netpol',)),
    _builtin('policy', 'v1', 'PodDisruptionBudget', 'poddisruptionbudgets', short=('pdb',), status=True),
    _builtin('rbac.authorization.k8s.io', 'v1', 'Role', 'roles'),
    _builtin('rbac.authorization.k8s.io', 'v1', 'RoleBinding', 'rolebindings'),
    _builtin('rbac.authorization.k8s.io', 'v1', 'ClusterRole', 'clusterroles', namespaced=False),
    _builtin('rbac.authorization.k8s.io', 'v1', 'ClusterRoleBinding', 'clusterrolebindings', namespaced=False),
    _builtin(
        'apiextensions.k8s.io', 'v1', 'CustomResourceDefinition', 'customresourcedefinitions',
        namespaced=False, short=('crd', 'crds'), status=True,
    ),
    _builtin('events.k8s.io', 'v1', 'Event', 'events', short=('ev',), storage_group='', storage_plural='events'),
)


@dataclass(frozen=True)
class FluxKind:
    group: str
    kind: str
    plural: str
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    versions: tuple[str, ...]  # served by default, newest first
    old_versions: tuple[str, ...] = ()  # served only with old_apis


_SOURCES = ('all', 'fluxcd', 'fluxcd-sources')
_APPLIERS = ('all', 'fluxcd', 'fluxcd-appliers')

_SOURCE_GROUP = 'source.toolkit.fluxcd.io'
FLUX_KINDS: tuple[FluxKind, ...] = (
    FluxKind(_SOURCE_GROUP, 'GitRepository', 'gitrepositories', ('gitrepo',), _SOURCES, ('v1',), ('v1beta2',)),
    FluxKind(_SOURCE_GROUP, 'OCIRepository', 'ocirepositories', ('ocirepo',), _SOURCES, ('v1',), ('v1beta2',)),
    FluxKind(_SOURCE_GROUP, 'Bucket', 'buckets', (), _SOURCES, ('v1',), ('v1beta2',)),
    FluxKind(_SOURCE_GROUP, 'HelmRepository', 'helmrepositories', ('helmrepo',), _SOURCES, ('v1',), ('v1beta2',)),
    FluxKind(_SOURCE_GROUP, 'HelmChart', 'helmcharts', ('hc',), _SOURCES, ('v1',), ('v1beta2',)),
    FluxKind(_SOURCE_GROUP, 'ExternalArtifact', 'externalartifacts', ('ea',), _SOURCES, ('v1',)),
    FluxKind('source.extensions.fluxcd.io', 'ArtifactGenerator', 'artifactgenerators', ('ag',), _SOURCES, ('v1beta1',)),
    FluxKind('kustomize.toolkit.fluxcd.io', 'Kustomization', 'kustomizations', ('ks',), _APPLIERS, ('v1',),
             ('v1beta2',)),
    FluxKind('helm.toolkit.fluxcd.io', 'HelmRelease', 'helmreleases', ('hr',), _APPLIERS, ('v2',),
             ('v2beta2', 'v2beta1')),
    FluxKind('fluxcd.controlplane.io', 'FluxInstance', 'fluxinstances', (), ('fluxcd', 'fluxcd-appliers'), ('v1',)),
)


def flux_types(old_apis: bool = False) -> list[ResourceType]:
    types = []
    for flux_kind in FLUX_KINDS:
        versions = flux_kind.versions + (flux_kind.old_versions if old_apis else ())
        for version in versions:
            types.append(ResourceType(
                group=flux_kind.group, version=version, kind=flux_kind.kind, plural=flux_kind.plural,
                singular=flux_kind.kind.lower(), namespaced=True, short_names=flux_kind.short_names,
                categories=flux_kind.categories, has_status=True,
            ))
    return types


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    spec = crd.get('spec') or {}
    names = spec.get('names') or {}
    types = []
    for version in spec.get('versions') or []:
        if not version.get('served', True):
            continue
        types.append(ResourceType(
            group=spec['group'], version=version['name'], kind=names['kind'], plural=names['plural'],
            singular=names.get('singular') or names['kind'].lower(),
            namespaced=spec.get('scope', 'Namespaced') == 'Namespaced',
            short_names=tuple(names.get('shortNames') or ()), categories=tuple(names.get('categories') or ()),
            has_status='status' in (version.get('subresources') or {}),
        ))
    return types


def guess_plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith(('s', 'x', 'ch', 'sh')):
        return lower + 'es'
    if lower.endswith('y') and lower[-2:-1] not in 'aeiou':
        return lower[:-1] + 'ies'
    return lower + 's'


@dataclass
class Registry:
    """Every served resource type, looked up by URL parts or by apiVersion and kind."""

    _by_path: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    _by_kind: dict[tuple[str, str], ResourceType] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def default(cls, old_apis: bool = False) -> Registry:
        registry = cls()
        for resource_type in (*BUILTIN_TYPES, *flux_types(old_apis)):
            registry.add(resource_type)
        return registry

    def add(self, resource_type: ResourceType) -> None:
        with self._lock:
            self._by_path[(resource_type.group, resource_type.version, resource_type.plural)] = resource_type
            # events.k8s.io Events must not shadow core Events for ('v1', 'Event').
            self._by_kind.setdefault((resource_type.api_version, resource_type.kind), resource_type)

    def remove_group_resource(self, group: str, plural: str) -> None:
        with self._lock:
            for key, resource_type in list(self._by_path.items()):
                if resource_type.group == group and resource_type.plural == plural:
                    del self._by_path[key]
                    self._by_kind.pop((resource_type.api_version, resource_type.kind), None)

    def by_path(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((api_version, kind))

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._by_path.values())

    def groups(self) -> dict[str, list[str]]:
        """Group name to its versions, newest first as the server prefers them."""
        found: dict[str, list[str]] = {}
        for resource_type in self.all():
            versions = found.setdefault(resource_type.group, [])
            if resource_type.version not in versions:
                versions.append(resource_type.version)
        for versions in found.values():
            versions.sort(key=_version_priority)
        return found

    def versions_of(self, group: str, plural: str) -> list[ResourceType]:
        return sorted(
            (t for t in self.all() if t.group == group and t.plural == plural),
            key=lambda t: _version_priority(t.version),
        )


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA before beta before alpha, higher numbers first."""
    match = re.fullmatch(r'v(\d+)(?:(alpha|beta)(\d+))?', version)
    if not match:
        return (3, 0, 0)
    major, stage, minor = match.groups()
    stage_rank = {None: 0, 'beta': 1, 'alpha': 2}[stage]
    return (stage_rank, -int(major), -int(minor or 0))
