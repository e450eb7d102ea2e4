"""Reading Flux objects: keys, conditions and the fields the landing rules look at. Pure functions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

SOURCE_KINDS = ('GitRepository', 'OCIRepository', 'Bucket', 'ExternalArtifact')
ORIGIN_REVISION = 'org.opencontainers.image.revision'
ORIGIN_SOURCE = 'org.opencontainers.image.source'
KUSTOMIZATION_NAME_LABEL = 'kustomize.toolkit.fluxcd.io/name'
KUSTOMIZATION_NAMESPACE_LABEL = 'kustomize.toolkit.fluxcd.io/namespace'


@dataclass(frozen=True, order=True)
class ObjectKey:
    """One object in one cluster (kubeconfig context); prints as kubectl's Kind/namespace/name."""

    cluster: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f'{self.kind}/{self.namespace}/{self.name}'

    @property
    def ref(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


def key_of(cluster: str, obj: Obj) -> ObjectKey:
    metadata = obj.get('metadata') or {}
    return ObjectKey(cluster, str(obj.get('kind', '')), str(metadata.get('namespace') or ''),
                     str(metadata.get('name', '')))


def condition(obj: Obj | None, condition_type: str) -> Obj | None:
    for item in ((obj or {}).get('status') or {}).get('conditions') or []:
        if isinstance(item, dict) and item.get('type') == condition_type:
            return item
    return None


def is_true(obj: Obj | None, condition_type: str) -> bool:
    found = condition(obj, condition_type)
    return found is not None and found.get('status') == 'True'


def status(obj: Obj | None) -> Obj:
    value = (obj or {}).get('status')
    return value if isinstance(value, dict) else {}


def spec(obj: Obj | None) -> Obj:
    value = (obj or {}).get('spec')
    return value if isinstance(value, dict) else {}


def generation_observed(obj: Obj) -> bool:
    return status(obj).get('observedGeneration') == (obj.get('metadata') or {}).get('generation')


def suspended(obj: Obj) -> bool:
    return bool(spec(obj).get('suspend'))


def artifact_revision(obj: Obj | None) -> str | None:
    artifact = status(obj).get('artifact')
    if isinstance(artifact, dict) and artifact.get('revision'):
        return str(artifact['revision'])
    return None


def artifact_metadata(obj: Obj | None) -> dict[str, str]:
    artifact = status(obj).get('artifact')
    metadata = artifact.get('metadata') if isinstance(artifact, dict) else None
    return {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}


def source_ref(obj: Obj) -> tuple[str, str, str] | None:
    """The (kind, namespace, name) a Kustomization reads from."""
    ref = spec(obj).get('sourceRef')
    if not isinstance(ref, dict) or not ref.get('kind') or not ref.get('name'):
        return None
    namespace = ref.get('namespace') or (obj.get('metadata') or {}).get('namespace') or ''
    return (str(ref['kind']), str(namespace), str(ref['name']))


def chart_source_ref(obj: Obj) -> tuple[str, str, str] | None:
    """A HelmRelease's spec.chart.spec.sourceRef as (kind, namespace, name)."""
    chart = spec(obj).get('chart')
    chart_spec = chart.get('spec') if isinstance(chart, dict) else None
    ref = chart_spec.get('sourceRef') if isinstance(chart_spec, dict) else None
    if not isinstance(ref, dict) or not ref.get('name'):
        return None
    namespace = ref.get('namespace') or (obj.get('metadata') or {}).get('namespace') or ''
    return (str(ref.get('kind', '')), str(namespace), str(ref['name']))


def helm_chart_name(release: Obj) -> tuple[str, str] | None:
    """(namespace, name) of the HelmChart helm-controller creates for a release: `<ns>-<name>`."""
    ref = chart_source_ref(release)
    if ref is None:
        return None
    metadata = release.get('metadata') or {}
    return ref[1], f'{metadata.get("namespace")}-{metadata.get("name")}'


def depends_on(obj: Obj) -> list[tuple[str, str]]:
    """(namespace, name) of each dependency, defaulting to the object's own namespace."""
    namespace = (obj.get('metadata') or {}).get('namespace') or ''
    found = []
    for item in spec(obj).get('dependsOn') or []:
        if isinstance(item, dict) and item.get('name'):
            found.append((str(item.get('namespace') or namespace), str(item['name'])))
    return found


def applied_by(obj: Obj) -> tuple[str, str] | None:
    """(namespace, name) of the Kustomization whose apply labels the object carries."""
    labels = (obj.get('metadata') or {}).get('labels') or {}
    name = labels.get(KUSTOMIZATION_NAME_LABEL)
    namespace = labels.get(KUSTOMIZATION_NAMESPACE_LABEL)
    return (str(namespace), str(name)) if name and namespace else None


def inventory_refs(obj: Obj) -> list[tuple[str, str, str, str]]:
    """(group, kind, namespace, name) of each inventory entry `<ns>_<name>_<group>_<Kind>`."""
    inventory = status(obj).get('inventory')
    entries = inventory.get('entries') if isinstance(inventory, dict) else None
    found = []
    for entry in entries or []:
        entry_id = str((entry or {}).get('id', ''))
        parts = entry_id.split('_')
        if len(parts) < 4:
            continue
        namespace, kind, group = parts[0], parts[-1], parts[-2]
        name = '_'.join(parts[1:-2])
        found.append((group, kind, namespace, name))
    return found
