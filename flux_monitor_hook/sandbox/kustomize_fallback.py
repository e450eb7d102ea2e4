"""A small pure-Python ``kustomize build`` for machines without kubectl.

``build.py`` prefers real kustomize (``kubectl kustomize``); this module is the fallback.  It
implements the subset of kustomize that GitOps repositories mostly use, with kustomize's order of
operations per directory (resources, components, generators, then patchesStrategicMerge, patches,
namespace, namePrefix/nameSuffix, labels, commonAnnotations, patchesJson6902, replicas, images) and
the top-level finishing steps (generator hash suffixes, name references, legacy output order).

Supported kustomization fields:

- ``resources`` (and legacy ``bases``): files (multi-document YAML, ``*List`` kinds inlined) and
  directories with their own kustomization, recursively, including ``../base``; remote URLs are not.
- ``components``: directories whose ``kind: Component`` kustomization transforms the parent's
  resources.
- ``namespace`` (cluster-scoped built-in kinds are left alone; like kustomize, unknown kinds such as
  ClusterIssuer are treated as namespaced; ServiceAccount subjects in ``default``/unset namespace
  of (Cluster)RoleBindings follow).
- ``namePrefix``/``nameSuffix`` (not on Namespace or CustomResourceDefinition).
- ``commonLabels`` and ``labels`` (``pairs``, ``includeSelectors``, ``includeTemplates``): metadata,
  plus pod-template labels and workload/Service selectors where kustomize puts them.
- ``commonAnnotations``: metadata and pod templates.
- ``patches`` (``path`` or inline ``patch``; with or without ``target`` selectors: group, version,
  kind, name/namespace regexes, label and annotation selectors), ``patchesStrategicMerge`` and
  ``patchesJson6902``.  Strategic merge is a recursive map merge where ``null`` deletes a key,
  ``$patch: delete|replace`` are honoured, and lists of built-in kinds merge on kustomize's merge
  keys (containers/env/volumes by name, ports by containerPort, ...; patch items first, then the
  untouched originals, as kustomize orders them); other lists are replaced, as kustomize does for
  custom resources.  JSON 6902 supports add, remove, replace, move, copy, test.
- ``configMapGenerator``/``secretGenerator`` with ``literals``, ``files``, ``envs``, ``behavior``
  (create, merge, replace), ``options`` and ``generatorOptions``.  Names get kustomize's own content
  hash suffix (identical to real kustomize) unless ``disableNameSuffixHash``; references to renamed
  ConfigMaps, Secrets, ServiceAccounts, PVCs and Roles inside pod specs and RoleBindings follow.
- ``images`` (``newName``, ``newTag``, ``digest``) on every ``containers``/``initContainers`` list.
- ``replicas``, ``sortOptions`` (legacy, fifo).

Anything else (``replacements``, ``vars``, ``helmCharts``, ``crds``, ``configurations``,
``generators``, ``transformers``, ``openapi``, ``buildMetadata``, label ``fields``, ...) raises
FallbackError naming the field, so unsupported input fails loudly instead of building differently.
Known approximations: strategic merge knows only the merge keys listed in ``_MERGE_KEYS``, name
references are followed only where ``_references`` looks, and cluster scope is judged by kind.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ('kustomization.yaml', 'kustomization.yml', 'Kustomization')

Obj = dict[str, Any]


class FallbackError(Exception):
    """A build failure; the message reads like kustomize's where that was cheap."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- YAML


_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, 'CSafeDumper', yaml.SafeDumper)


class _CoreLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """YAML as kustomize (go-yaml v3) reads it into untyped values: timestamps stay strings,
    only true/false are booleans, and ``1:30`` is not a base-60 integer."""


_CoreLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers
            if tag not in ('tag:yaml.org,2002:timestamp', 'tag:yaml.org,2002:bool',
                           'tag:yaml.org,2002:int')]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_CoreLoader.add_implicit_resolver(
    'tag:yaml.org,2002:bool', re.compile(r'^(?:true|True|TRUE|false|False|FALSE)$'), list('tTfF'))
_CoreLoader.add_implicit_resolver(
    'tag:yaml.org,2002:int',
    re.compile(r'^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$'),
    list('-+0123456789'))


def load_yaml_documents(text: str | bytes) -> list[Any]:
    """All non-empty documents of a YAML stream."""
    return [doc for doc in yaml.load_all(text, Loader=_CoreLoader) if doc is not None]


def dump_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_BaseDumper, default_flow_style=False, sort_keys=False)


# --------------------------------------------------------------------------- kinds


_CLUSTER_SCOPED = frozenset({
    'APIService', 'CertificateSigningRequest', 'ClusterRole', 'ClusterRoleBinding',
    'ComponentStatus', 'CSIDriver', 'CSINode', 'CustomResourceDefinition', 'FlowSchema',
    'IngressClass', 'MutatingWebhookConfiguration', 'Namespace', 'Node', 'PersistentVolume',
    'PodSecurityPolicy', 'PriorityClass', 'PriorityLevelConfiguration', 'RuntimeClass',
    'SelfSubjectAccessReview', 'SelfSubjectRulesReview', 'StorageClass', 'SubjectAccessReview',
    'TokenReview', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding',
    'ValidatingWebhookConfiguration', 'VolumeAttachment',
})
_BUILTIN_GROUPS = frozenset({
    '', 'apps', 'batch', 'autoscaling', 'policy', 'networking.k8s.io', 'rbac.authorization.k8s.io',
    'storage.k8s.io', 'scheduling.k8s.io', 'coordination.k8s.io', 'node.k8s.io',
    'discovery.k8s.io', 'admissionregistration.k8s.io', 'apiextensions.k8s.io',
    'certificates.k8s.io', 'apiregistration.k8s.io', 'events.k8s.io',
})
_WORKLOADS = frozenset({'Deployment', 'ReplicaSet', 'DaemonSet', 'StatefulSet', 'Job',
                        'ReplicationController'})
_SELECTOR_WORKLOADS = frozenset({'Deployment', 'ReplicaSet', 'DaemonSet', 'StatefulSet'})
_REPLICATED = frozenset({'Deployment', 'ReplicaSet', 'StatefulSet', 'ReplicationController'})
_NO_RENAME = frozenset({'Namespace', 'CustomResourceDefinition'})

# kustomize's legacy output order (api/resid/gvk.go).
_ORDER_FIRST = (
    'Namespace', 'ResourceQuota', 'StorageClass', 'CustomResourceDefinition', 'ServiceAccount',
    'PodSecurityPolicy', 'Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding', 'ConfigMap',
    'Secret', 'Endpoints', 'Service', 'LimitRange', 'PriorityClass', 'PersistentVolume',
    'PersistentVolumeClaim', 'Deployment', 'StatefulSet', 'CronJob', 'PodDisruptionBudget',
)
_ORDER_LAST = ('MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration')

# Strategic-merge keys of built-in list fields (from the Kubernetes OpenAPI patchMergeKey).
_MERGE_KEYS = {
    'containers': 'name', 'initContainers': 'name', 'ephemeralContainers': 'name', 'env': 'name',
    'volumes': 'name', 'volumeMounts': 'mountPath', 'volumeDevices': 'devicePath',
    'imagePullSecrets': 'name', 'hostAliases': 'ip', 'ports': 'containerPort',
    'topologySpreadConstraints': 'topologyKey', 'resourceClaims': 'name',
}

# Bookkeeping carried on objects while building, removed before output (kustomize does the same).
_PREVIOUS_NAMES = 'internal.config.kubernetes.io/previousNames'
_PREVIOUS_NAMESPACES = 'internal.config.kubernetes.io/previousNamespaces'
_NEEDS_HASH = 'internal.config.kubernetes.io/needsHashSuffix'

_KNOWN_FIELDS = frozenset({
    'apiVersion', 'kind', 'metadata', 'resources', 'bases', 'components', 'crds', 'configurations',
    'generators', 'transformers', 'validators', 'namespace', 'namePrefix', 'nameSuffix',
    'commonLabels', 'labels', 'commonAnnotations', 'patches', 'patchesStrategicMerge',
    'patchesJson6902', 'configMapGenerator', 'secretGenerator', 'generatorOptions', 'images',
    'imageTags', 'replicas', 'replacements', 'vars', 'helmCharts', 'helmChartInflationGenerator',
    'helmGlobals', 'openapi', 'buildMetadata', 'sortOptions',
})
SUPPORTED_FIELDS = frozenset({
    'apiVersion', 'kind', 'metadata', 'resources', 'bases', 'components', 'namespace',
    'namePrefix', 'nameSuffix', 'commonLabels', 'labels', 'commonAnnotations', 'patches',
    'patchesStrategicMerge', 'patchesJson6902', 'configMapGenerator', 'secretGenerator',
    'generatorOptions', 'images', 'replicas', 'sortOptions',
})


def _gvk(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    api_version = str(obj.get('apiVersion') or '')
    group, _, version = api_version.rpartition('/')
    return group, version, str(obj.get('kind') or '')


def _meta(obj: Obj) -> Obj:
    metadata = obj.get('metadata')
    if not isinstance(metadata, dict):
        metadata = {}
        obj['metadata'] = metadata
    return metadata


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get('metadata') or {}).get('name') or '')


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get('metadata') or {}).get('namespace') or '')


def _display_id(obj: Mapping[str, Any]) -> str:
    """kustomize's ResId text, e.g. ``ConfigMap.v1.[noGrp]/app.[noNs]``."""
    group, version, kind = _gvk(obj)
    return (f'{kind or "[noKind]"}.{version or "[noVer]"}.{group or "[noGrp]"}/'
            f'{_name(obj)}.{_namespace(obj) or "[noNs]"}')


_UNSET = '~X'  # how the bookkeeping lists spell "no namespace"


def _internal_list(obj: Obj, key: str) -> list[str]:
    value = ((obj.get('metadata') or {}).get('annotations') or {}).get(key)
    return ['' if item == _UNSET else item for item in value.split(',')] if value else []


def _remember(obj: Obj, key: str, value: str) -> None:
    annotations = _meta(obj).setdefault('annotations', {})
    previous = annotations.get(key)
    value = value or _UNSET
    annotations[key] = f'{previous},{value}' if previous else value


def _all_names(obj: Obj) -> list[str]:
    return [_name(obj), *_internal_list(obj, _PREVIOUS_NAMES)]


def _all_namespaces(obj: Obj) -> list[str]:
    return [_namespace(obj), *_internal_list(obj, _PREVIOUS_NAMESPACES)]


def _same_namespace(a: str, b: str) -> bool:
    return (a or 'default') == (b or 'default')


# --------------------------------------------------------------------------- entry point


def find_kustomization_file(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


class _Context:
    def __init__(self, root: Path, enforce: bool) -> None:
        self.root = root.resolve()
        self.enforce = enforce

    def rel(self, path: Path) -> str:
        """Paths in messages: relative to the build root, like the rest of the sandbox output."""
        resolved = path.resolve()
        try:
            return resolved.relative_to(self.root).as_posix() or '.'
        except ValueError:
            return os.path.relpath(resolved, self.root)

    def check_inside(self, path: Path) -> None:
        """Flux's secure filesystem: nothing outside the artifact root may be read."""
        if not self.enforce:
            return
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise FallbackError(f"security; file '{self.rel(path)}' is not in or below the "
                                'source root')


def build(directory: str | os.PathLike[str], *, kustomization: Mapping[str, Any] | None = None,
          root: str | os.PathLike[str] | None = None) -> list[Obj]:
    """``kustomize build directory``; ``kustomization`` replaces the directory's own file (used
    for Flux's generated or amended kustomization).  ``root`` bounds file access like Flux's
    secure filesystem."""
    path = Path(directory)
    context = _Context(Path(root) if root is not None else path, enforce=root is not None)
    kust = dict(kustomization) if kustomization is not None else _load_kustomization(path, context)
    resources = _build_level(path, kust, [], context, (path.resolve(),))
    resources = _finish(resources)
    order = ((kust.get('sortOptions') or {}).get('order') or 'legacy')
    return resources if order == 'fifo' else legacy_sort(resources)


def _load_kustomization(directory: Path, context: _Context) -> Obj:
    kfile = find_kustomization_file(directory)
    if kfile is None:
        raise FallbackError(
            "unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' "
            f"in directory '{context.rel(directory)}'")
    try:
        docs = load_yaml_documents(kfile.read_bytes())
    except yaml.YAMLError as error:
        raise FallbackError(f'invalid Kustomization: {_yaml_error(error)}') from error
    if not docs:
        raise FallbackError(f"kustomization.yaml is empty in '{context.rel(directory)}'")
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise FallbackError(f'invalid Kustomization: {context.rel(kfile)} is not a mapping')
    return docs[0]


def _yaml_error(error: yaml.YAMLError) -> str:
    return ' '.join(str(error).split())


def _check_fields(kust: Mapping[str, Any], directory: Path, context: _Context) -> None:
    for field in kust:
        if field not in _KNOWN_FIELDS:
            raise FallbackError(f'invalid Kustomization: json: unknown field "{field}"')
        if field not in SUPPORTED_FIELDS and kust[field] not in (None, [], {}, ''):
            raise FallbackError(
                f"kustomization field '{field}' in '{context.rel(directory)}' is not supported by "
                'the built-in kustomize fallback (install kubectl to build it)')


def _build_level(directory: Path, kust: Mapping[str, Any], base: list[Obj], context: _Context,
                 stack: tuple[Path, ...]) -> list[Obj]:
    _check_fields(kust, directory, context)
    resources = list(base)
    for entry in [*(kust.get('resources') or []), *(kust.get('bases') or [])]:
        resources.extend(_accumulate(directory, str(entry), context, stack))
    for entry in kust.get('components') or []:
        component_dir = directory / str(entry)
        context.check_inside(component_dir)
        real = component_dir.resolve()
        if real in stack:
            raise FallbackError(f"cycle detected: component '{entry}' includes itself")
        if not component_dir.is_dir():
            raise FallbackError(
                f"accumulating components: accumulateDirectory: '{context.rel(component_dir)}' "
                'must resolve to a directory containing a Component kustomization')
        component = _load_kustomization(component_dir, context)
        if component.get('kind') != 'Component':
            raise FallbackError(f"accumulating components: expected kind 'Component' for path "
                                f"'{context.rel(component_dir)}' but got "
                                f"'{component.get('kind') or 'Kustomization'}'")
        resources = _build_level(component_dir, component, resources, context, (*stack, real))
    resources = _run_generators(directory, kust, resources, context)
    return _run_transformers(directory, kust, resources, context)


def _accumulate(directory: Path, entry: str, context: _Context,
                stack: tuple[Path, ...]) -> list[Obj]:
    if '://' in entry or entry.startswith(('github.com/', 'git@', 'gitlab.com/', 'bitbucket.org/')):
        raise FallbackError(f"accumulating resources: remote resource '{entry}' is not supported "
                            'by the built-in kustomize fallback')
    target = directory / entry
    context.check_inside(target)
    if target.is_dir():
        real = target.resolve()
        if real in stack:
            raise FallbackError(f"cycle detected: '{context.rel(target)}' includes itself")
        shown = context.rel(target)
        try:
            kust = _load_kustomization(target, context)
            if kust.get('kind') == 'Component':
                raise FallbackError(f"expected kind 'Kustomization' for path '{shown}' but got "
                                    "'Component'")
            return _build_level(target, kust, [], context, (*stack, real))
        except FallbackError as error:
            # kustomize's wording for a failure inside a resource directory.
            raise FallbackError(f"accumulating resources: accumulation err='accumulating "
                                f"resources from '{entry}': read {shown}: is a directory': "
                                f"recursed accumulation of path '{shown}': "
                                f'{error.message}') from error
    if not target.is_file():
        raise FallbackError(f"accumulating resources: accumulation err='accumulating resources "
                            f"from '{entry}': open {context.rel(target)}: no such file or "
                            "directory'")
    return _read_resources(target, entry, context)


def _read_resources(path: Path, entry: str, context: _Context) -> list[Obj]:
    try:
        docs = load_yaml_documents(path.read_bytes())
    except yaml.YAMLError as error:
        raise FallbackError(f"accumulating resources: accumulation err='accumulating resources "
                            f"from '{entry}': {_yaml_error(error)}'") from error
    objects: list[Obj] = []
    for doc in docs:
        if isinstance(doc, dict) and str(doc.get('kind') or '').endswith('List') \
                and isinstance(doc.get('items'), list):
            items = doc['items']
        else:
            items = [doc]
        for item in items:
            problem = resource_metadata_problem(item)
            if problem:
                raise FallbackError(f"accumulating resources: accumulation err='accumulating "
                                    f"resources from '{entry}': {problem}'")
            objects.append(copy.deepcopy(item))
    return objects


def resource_metadata_problem(doc: Any) -> str | None:
    """kustomize's complaint about a YAML document that is not a Kubernetes object, or None."""
    if not isinstance(doc, dict) or not doc.get('kind'):
        return 'missing Resource metadata'
    if str(doc['kind']).endswith('List'):
        return None
    metadata = doc.get('metadata')
    if not isinstance(metadata, dict) or not metadata.get('name'):
        # Go prints the ResourceMeta struct; this is its shape without labels or annotations.
        return (f"missing metadata.name in object {{{{{doc.get('apiVersion') or ''} "
                f"{doc['kind']}}} {{{{ }} map[] map[]}}}}")
    return None


# --------------------------------------------------------------------------- generators


def _merge_options(*options: Any) -> Obj:
    merged: Obj = {'labels': {}, 'annotations': {}}
    for option in options:
        if not isinstance(option, Mapping):
            continue
        merged['labels'].update(option.get('labels') or {})
        merged['annotations'].update(option.get('annotations') or {})
        # Like kustomize's MergeAndOverrideGenOptions, a later false cannot undo an earlier true.
        for key in ('disableNameSuffixHash', 'immutable'):
            if option.get(key):
                merged[key] = True
    return merged


def _strip_quotes(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
        return value[1:-1]
    return value


def _generator_data(directory: Path, spec: Mapping[str, Any],
                    context: _Context) -> tuple[dict[str, str], dict[str, bytes]]:
    text: dict[str, str] = {}
    binary: dict[str, bytes] = {}
    for literal in spec.get('literals') or []:
        key, sep, value = str(literal).partition('=')
        if not sep or not key:
            raise FallbackError(f"invalid literal source {literal}, expected key=value")
        text[key] = _strip_quotes(value)
    for env_file in [*(spec.get('envs') or []), *([spec['env']] if spec.get('env') else [])]:
        path = directory / str(env_file)
        context.check_inside(path)
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise FallbackError(f'env source file: {context.rel(path)}: '
                                f'{error.strerror}') from error
        for line in lines:
            stripped = line.strip()
            if not stripped or stripped.startswith('#'):
                continue
            key, sep, value = stripped.partition('=')
            text[key] = value if sep else os.environ.get(key, '')
    for file_entry in spec.get('files') or []:
        key, sep, name = str(file_entry).partition('=')
        if not sep:
            key, name = os.path.basename(key), key
        path = directory / name
        context.check_inside(path)
        try:
            content = path.read_bytes()
        except OSError as error:
            raise FallbackError(f'loading generator file {context.rel(path)}: '
                                f'{error.strerror}') from error
        try:
            text[key] = content.decode('utf-8')
        except UnicodeDecodeError:
            binary[key] = content
    return text, binary


def _make_generated(kind: str, directory: Path, spec: Mapping[str, Any], level_options: Any,
                    namespace: str, context: _Context) -> Obj:
    text, binary = _generator_data(directory, spec, context)
    options = _merge_options(level_options, spec.get('options'))
    metadata: Obj = {'name': str(spec.get('name') or '')}
    if spec.get('namespace') or namespace:
        metadata['namespace'] = str(spec.get('namespace') or namespace)
    if options['labels']:
        metadata['labels'] = dict(options['labels'])
    if options['annotations']:
        metadata['annotations'] = dict(options['annotations'])
    obj: Obj = {'apiVersion': 'v1', 'kind': kind, 'metadata': metadata}
    if kind == 'ConfigMap':
        if text:
            obj['data'] = dict(sorted(text.items()))
        if binary:
            obj['binaryData'] = {k: base64.b64encode(v).decode() for k, v in sorted(binary.items())}
    else:
        data = {k: base64.b64encode(v.encode()).decode() for k, v in text.items()}
        data.update({k: base64.b64encode(v).decode() for k, v in binary.items()})
        if data:
            obj['data'] = dict(sorted(data.items()))
        obj['type'] = str(spec.get('type') or 'Opaque')
    if options.get('immutable'):
        obj['immutable'] = True
    if not options.get('disableNameSuffixHash'):
        metadata.setdefault('annotations', {})[_NEEDS_HASH] = 'true'
    return obj


def _run_generators(directory: Path, kust: Mapping[str, Any], resources: list[Obj],
                    context: _Context) -> list[Obj]:
    level_options = kust.get('generatorOptions')
    for kind, field in (('ConfigMap', 'configMapGenerator'), ('Secret', 'secretGenerator')):
        for spec in kust.get(field) or []:
            generated = _make_generated(kind, directory, spec, level_options, '', context)
            behavior = str(spec.get('behavior') or 'create')
            existing = [r for r in resources if r.get('kind') == kind
                        and generated['metadata']['name'] in _all_names(r)
                        and any(_same_namespace(ns, _namespace(generated))
                                for ns in _all_namespaces(r))]
            if behavior == 'create':
                if existing:
                    raise FallbackError(f'merging from generator {_display_id(generated)}: '
                                        'may not add resource with an already registered id')
                resources.append(generated)
                continue
            if behavior not in ('merge', 'replace'):
                raise FallbackError(f"generator behavior '{behavior}' is invalid")
            if len(existing) != 1:
                raise FallbackError(f'id {_display_id(generated)} does not exist; cannot merge '
                                    'or replace')
            target = existing[0]
            for key in ('data', 'binaryData'):
                if behavior == 'replace':
                    target.pop(key, None)
                if key in generated:
                    target[key] = dict(sorted({**(target.get(key) or {}),
                                               **generated[key]}.items()))
            for key in ('labels', 'annotations'):
                if generated['metadata'].get(key):
                    _meta(target).setdefault(key, {}).update(generated['metadata'][key])
    return resources


# --------------------------------------------------------------------------- transformers


def _run_transformers(directory: Path, kust: Mapping[str, Any], resources: list[Obj],
                      context: _Context) -> list[Obj]:
    for entry in kust.get('patchesStrategicMerge') or []:
        for patch in _patch_documents(directory, entry, context):
            resources = _apply_patch(resources, patch, None, context)
    for entry in kust.get('patches') or []:
        if not isinstance(entry, Mapping):
            raise FallbackError('invalid Kustomization: patches entries must be mappings')
        source = entry.get('patch') if entry.get('patch') else None
        if source is None and not entry.get('path'):
            raise FallbackError('must specify one of patch and path in patches')
        target = entry.get('target')
        for patch in _patch_documents(directory, source if source is not None else
                                      {'path': entry['path']}, context):
            resources = _apply_patch(resources, patch, target, context)
    namespace = kust.get('namespace')
    if namespace:
        _set_namespace(resources, str(namespace))
    prefix, suffix = str(kust.get('namePrefix') or ''), str(kust.get('nameSuffix') or '')
    if prefix or suffix:
        for obj in resources:
            if obj.get('kind') not in _NO_RENAME:
                _rename(obj, f'{prefix}{_name(obj)}{suffix}')
    if kust.get('commonLabels'):
        _add_labels(resources, _string_map(kust['commonLabels']), selectors=True, templates=True)
    for label_set in kust.get('labels') or []:
        if label_set.get('fields'):
            raise FallbackError("kustomization field 'labels[].fields' is not supported by the "
                                'built-in kustomize fallback (install kubectl to build it)')
        selectors = bool(label_set.get('includeSelectors'))
        _add_labels(resources, _string_map(label_set.get('pairs') or {}), selectors=selectors,
                    templates=selectors or bool(label_set.get('includeTemplates')))
    if kust.get('commonAnnotations'):
        _add_annotations(resources, _string_map(kust['commonAnnotations']))
    for entry in kust.get('patchesJson6902') or []:
        if not entry.get('target'):
            raise FallbackError('patchesJson6902 entries must have a target')
        source = entry.get('patch') if entry.get('patch') else {'path': entry.get('path')}
        for patch in _patch_documents(directory, source, context):
            if not isinstance(patch, list):
                raise FallbackError('patchesJson6902 patch must be a list of operations')
            resources = _apply_patch(resources, patch, entry['target'], context)
    for replica in kust.get('replicas') or []:
        for obj in resources:
            if obj.get('kind') in _REPLICATED and str(replica.get('name')) in _all_names(obj):
                obj.setdefault('spec', {})['replicas'] = replica.get('count')
    for image in kust.get('images') or []:
        for obj in resources:
            _set_image(obj, image)
    return resources


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise FallbackError(f'expected a map of strings, got {value!r}')
    return {str(k): '' if v is None else str(v) if not isinstance(v, bool) else str(v).lower()
            for k, v in value.items()}


def _set_namespace(resources: list[Obj], namespace: str) -> None:
    for obj in resources:
        kind = obj.get('kind')
        if kind in ('RoleBinding', 'ClusterRoleBinding'):
            for subject in obj.get('subjects') or []:
                if isinstance(subject, dict) and subject.get('kind') == 'ServiceAccount' and \
                        (subject.get('namespace') or 'default') == 'default':
                    subject['namespace'] = namespace
        if kind in _CLUSTER_SCOPED:
            continue
        current = _namespace(obj)
        if current != namespace:
            _remember(obj, _PREVIOUS_NAMESPACES, current)
            _meta(obj)['namespace'] = namespace


def _rename(obj: Obj, new_name: str) -> None:
    if new_name != _name(obj):
        _remember(obj, _PREVIOUS_NAMES, _name(obj))
        _meta(obj)['name'] = new_name


def _pod_templates(obj: Obj) -> Iterator[Obj]:
    """The pod template metadata holders of a workload (template, CronJob job template)."""
    spec = obj.get('spec')
    if not isinstance(spec, dict):
        return
    kind = obj.get('kind')
    if kind in _WORKLOADS and isinstance(spec.get('template'), dict):
        yield spec['template']
    if kind == 'CronJob' and isinstance(spec.get('jobTemplate'), dict):
        job = spec['jobTemplate']
        yield job
        if isinstance(job.get('spec'), dict) and isinstance(job['spec'].get('template'), dict):
            yield job['spec']['template']


def _add_labels(resources: list[Obj], labels: dict[str, str], *, selectors: bool,
                templates: bool) -> None:
    for obj in resources:
        _meta(obj).setdefault('labels', {}).update(labels)
        if templates:
            for template in _pod_templates(obj):
                meta = template.get('metadata')
                if not isinstance(meta, dict):
                    meta = template['metadata'] = {}
                meta.setdefault('labels', {}).update(labels)
            if obj.get('kind') == 'StatefulSet':
                for claim in (obj.get('spec') or {}).get('volumeClaimTemplates') or []:
                    if isinstance(claim, dict):
                        claim.setdefault('metadata', {}).setdefault('labels', {}).update(labels)
        if not selectors:
            continue
        kind, spec = obj.get('kind'), obj.get('spec')
        if kind in ('Service', 'ReplicationController'):
            obj.setdefault('spec', {}).setdefault('selector', {}).update(labels)
        elif kind in _SELECTOR_WORKLOADS:
            obj.setdefault('spec', {}).setdefault('selector', {}) \
                .setdefault('matchLabels', {}).update(labels)
        elif kind in ('Job', 'PodDisruptionBudget') and isinstance(spec, dict) and \
                isinstance(spec.get('selector'), dict):
            spec['selector'].setdefault('matchLabels', {}).update(labels)
        elif kind == 'NetworkPolicy' and isinstance(spec, dict):
            spec.setdefault('podSelector', {}).setdefault('matchLabels', {}).update(labels)


def _add_annotations(resources: list[Obj], annotations: dict[str, str]) -> None:
    for obj in resources:
        _meta(obj).setdefault('annotations', {}).update(annotations)
        for template in _pod_templates(obj):
            meta = template.get('metadata')
            if not isinstance(meta, dict):
                meta = template['metadata'] = {}
            meta.setdefault('annotations', {}).update(annotations)


def _split_image(image: str) -> tuple[str, str, str]:
    name, _, digest = image.partition('@')
    colon = name.rfind(':')
    if colon > name.rfind('/'):
        return name[:colon], name[colon + 1:], digest
    return name, '', digest


def _set_image(obj: Any, image: Mapping[str, Any]) -> None:
    if isinstance(obj, list):
        for item in obj:
            _set_image(item, image)
        return
    if not isinstance(obj, dict):
        return
    for key, value in obj.items():
        if key in ('containers', 'initContainers', 'ephemeralContainers') and \
                isinstance(value, list):
            for container in value:
                if isinstance(container, dict) and isinstance(container.get('image'), str):
                    container['image'] = _new_image(container['image'], image)
        else:
            _set_image(value, image)


def _new_image(current: str, image: Mapping[str, Any]) -> str:
    name, tag, digest = _split_image(current)
    if name != str(image.get('name') or ''):
        return current
    new_name = str(image.get('newName') or name)
    if image.get('digest'):
        return f'{new_name}@{image["digest"]}'
    if image.get('newTag'):
        return f'{new_name}:{image["newTag"]}'
    return new_name + (f':{tag}' if tag else '') + (f'@{digest}' if digest else '')


# --------------------------------------------------------------------------- patches


def _patch_documents(directory: Path, source: Any, context: _Context) -> list[Any]:
    """The patches in an inline string, a mapping, or a file (``{'path': ...}`` or a path)."""
    if isinstance(source, Mapping) and set(source) == {'path'}:
        path = directory / str(source['path'])
        context.check_inside(path)
        try:
            text: Any = path.read_bytes()
        except OSError as error:
            raise FallbackError(f"trouble reading patch '{source['path']}': "
                                f'open {context.rel(path)}: no such file or directory') from error
    elif isinstance(source, str):
        text = source
        if '\n' not in source and (directory / source).is_file():
            text = (directory / source).read_bytes()  # patchesStrategicMerge accepts file names
    else:
        return [copy.deepcopy(source)]
    try:
        docs = load_yaml_documents(text)
    except yaml.YAMLError as error:
        raise FallbackError(f'unable to parse patch: {_yaml_error(error)}') from error
    return docs


def _label_matcher(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    terms: list[tuple[str, str, set[str]]] = []
    for raw in re.split(r',(?![^()]*\))', selector):
        term = raw.strip()
        if not term:
            continue
        match = re.match(r'^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$', term)
        if match:
            terms.append((match.group(1), match.group(2),
                          {v.strip() for v in match.group(3).split(',')}))
        elif '!=' in term:
            key, _, value = term.partition('!=')
            terms.append((key.strip(), '!=', {value.strip()}))
        elif '=' in term:
            key, _, value = term.replace('==', '=').partition('=')
            terms.append((key.strip(), 'in', {value.strip()}))
        elif term.startswith('!'):
            terms.append((term[1:].strip(), 'absent', set()))
        else:
            terms.append((term, 'present', set()))

    def matches(values: Mapping[str, Any]) -> bool:
        for key, op, wanted in terms:
            value = values.get(key)
            ok = {'in': value in wanted, 'notin': value not in wanted,
                  '!=': value not in wanted, 'absent': key not in values,
                  'present': key in values}[op]
            if not ok:
                return False
        return True

    return matches


def _selected(obj: Obj, target: Mapping[str, Any]) -> bool:
    group, version, kind = _gvk(obj)
    for key, actual in (('group', group), ('version', version), ('kind', kind)):
        if target.get(key) and str(target[key]) != actual:
            return False
    if target.get('name'):
        regex = re.compile(f'^(?:{target["name"]})$')
        if not any(regex.match(name) for name in _all_names(obj)):
            return False
    if target.get('namespace'):
        regex = re.compile(f'^(?:{target["namespace"]})$')
        if not any(regex.match(ns) for ns in _all_namespaces(obj)):
            return False
    metadata = obj.get('metadata') or {}
    if target.get('labelSelector') and \
            not _label_matcher(str(target['labelSelector']))(metadata.get('labels') or {}):
        return False
    return not (target.get('annotationSelector') and not _label_matcher(
        str(target['annotationSelector']))(metadata.get('annotations') or {}))


def _matches_patch_id(obj: Obj, patch: Mapping[str, Any]) -> bool:
    p_group, p_version, p_kind = _gvk(patch)
    group, version, kind = _gvk(obj)
    if (p_kind, p_group) != (kind, group) or (p_version and p_version != version):
        return False
    if _name(patch) not in _all_names(obj):
        return False
    return any(_same_namespace(_namespace(patch), ns) for ns in _all_namespaces(obj))


def _apply_patch(resources: list[Obj], patch: Any, target: Mapping[str, Any] | None,
                 context: _Context) -> list[Obj]:
    if isinstance(patch, list):
        if target is None:
            raise FallbackError('unable to apply JSON6902 patch without a target')
        for obj in resources:
            if _selected(obj, target):
                _json6902(obj, patch)
        return resources
    if not isinstance(patch, dict):
        raise FallbackError(f'unable to parse SM or JSON patch from {patch!r}')
    if target is not None:
        chosen = [obj for obj in resources if _selected(obj, target)]
    else:
        chosen = [obj for obj in resources if _matches_patch_id(obj, patch)]
        if len(chosen) != 1:
            patch_id = _display_id(patch)
            problem = 'no matches for Id' if not chosen else 'multiple matches for Id'
            raise FallbackError(f'no resource matches strategic merge patch "{patch_id}": '
                                f'{problem} {patch_id}; failed to find unique target for patch '
                                f'{patch_id}')
    if patch.get('$patch') == 'delete':
        doomed = {id(obj) for obj in chosen}
        return [obj for obj in resources if id(obj) not in doomed]
    # kustomize points the patch at each target first: its own identity never renames anything.
    body = {k: v for k, v in patch.items() if k not in ('apiVersion', 'kind', 'metadata')}
    if isinstance(patch.get('metadata'), dict):
        extra = {k: v for k, v in patch['metadata'].items() if k not in ('name', 'namespace')}
        if extra:
            body['metadata'] = extra
    for obj in chosen:
        builtin = _gvk(obj)[0] in _BUILTIN_GROUPS
        merged = _strategic_merge(obj, body, builtin)
        obj.clear()
        obj.update(merged)
    return resources


def _strategic_merge(original: Any, patch: Any, builtin: bool) -> Any:
    if not isinstance(patch, dict) or not isinstance(original, dict):
        return _strip_directives(copy.deepcopy(patch))
    if patch.get('$patch') == 'replace':
        return _strip_directives({k: v for k, v in patch.items() if k != '$patch'})
    result = dict(original)
    for key, value in patch.items():
        if key.startswith('$'):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            if value.get('$patch') == 'delete':
                result.pop(key, None)
            else:
                result[key] = _strategic_merge(result[key], value, builtin)
        elif isinstance(value, list) and isinstance(result.get(key), list) and builtin \
                and key in _MERGE_KEYS:
            result[key] = _merge_list(result[key], value, _MERGE_KEYS[key], builtin)
        else:
            result[key] = _strip_directives(copy.deepcopy(value))
    return result


def _merge_list(original: list[Any], patch: list[Any], merge_key: str, builtin: bool) -> list[Any]:
    """Merge by key as kustomize does: the patch's items first, in patch order, then the
    original items the patch does not mention, in their order."""
    if not all(isinstance(item, dict) and merge_key in item for item in [*original, *patch]):
        return [_strip_directives(item) for item in copy.deepcopy(patch)]
    by_key = {item[merge_key]: item for item in original}
    mentioned = {item[merge_key] for item in patch}
    result: list[Any] = []
    for item in patch:
        if item.get('$patch') == 'delete':
            continue
        existing = by_key.get(item[merge_key])
        if existing is None:
            result.append(_strip_directives(copy.deepcopy(item)))
        else:
            result.append(_strategic_merge(copy.deepcopy(existing), item, builtin))
    result.extend(copy.deepcopy(item) for item in original if item[merge_key] not in mentioned)
    return result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not str(k).startswith('$')}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _pointer(path: str) -> list[str]:
    if path == '':
        return []
    if not path.startswith('/'):
        raise FallbackError(f'JSON pointer must start with "/": {path}')
    return [part.replace('~1', '/').replace('~0', '~') for part in path[1:].split('/')]


def _walk(document: Any, parts: list[str], op: str, path: str) -> Any:
    node = document
    for part in parts:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as error:
            raise FallbackError(f'{op} operation does not apply: doc is missing path: '
                                f'"{path}": missing value') from error
    return node


def _json6902(obj: Obj, operations: list[Any]) -> None:
    for operation in operations:
        if not isinstance(operation, dict):
            raise FallbackError(f'invalid JSON patch operation {operation!r}')
        op, path = str(operation.get('op') or ''), str(operation.get('path') or '')
        parts = _pointer(path)
        if op in ('move', 'copy'):
            source = str(operation.get('from') or '')
            value = copy.deepcopy(_walk(obj, _pointer(source), op, source))
            if op == 'move':
                _json_remove(obj, _pointer(source), op, source)
            _json_add(obj, parts, value, op, path)
        elif op == 'add':
            _json_add(obj, parts, copy.deepcopy(operation.get('value')), op, path)
        elif op == 'remove':
            _json_remove(obj, parts, op, path)
        elif op == 'replace':
            _walk(obj, parts, op, path)
            _json_remove(obj, parts, op, path)
            _json_add(obj, parts, copy.deepcopy(operation.get('value')), op, path)
        elif op == 'test':
            if _walk(obj, parts, op, path) != operation.get('value'):
                raise FallbackError(f'testing value {path} failed: test failed')
        else:
            raise FallbackError(f'Unexpected kind: {op}')


def _json_add(document: Obj, parts: list[str], value: Any, op: str, path: str) -> None:
    if not parts:
        document.clear()
        document.update(value)
        return
    parent = _walk(document, parts[:-1], op, path)
    key = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if key == '-' else int(key)
        if index > len(parent):
            raise FallbackError(f'{op} operation does not apply: doc is missing path: "{path}"')
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[key] = value
    else:
        raise FallbackError(f'{op} operation does not apply: doc is missing path: "{path}"')


def _json_remove(document: Obj, parts: list[str], op: str, path: str) -> None:
    if not parts:
        if op == 'replace':
            document.clear()  # the add that follows puts the new document in
            return
        raise FallbackError(f'{op} operation does not apply: cannot remove the whole document')
    parent = _walk(document, parts[:-1], op, path)
    try:
        if isinstance(parent, list):
            del parent[int(parts[-1])]
        else:
            del parent[parts[-1]]
    except (KeyError, IndexError, ValueError, TypeError) as error:
        raise FallbackError(f'{op} operation does not apply: doc is missing path: "{path}": '
                            'missing value') from error


# --------------------------------------------------------------------------- finishing


def _go_json(value: Any) -> str:
    """``encoding/json`` output: sorted keys, no spaces, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=False)
    return text.replace('<', '\\u003c').replace('>', '\\u003e').replace('&', '\\u0026')


_HASH_TABLE = str.maketrans('013ae', 'ghkmt')


def generator_hash(obj: Mapping[str, Any]) -> str:
    """kustomize's content hash suffix for a generated ConfigMap or Secret (api/hasher)."""
    encoded: Obj = {'kind': obj.get('kind'), 'name': '', 'data': obj.get('data') or {}}
    if obj.get('kind') == 'Secret':
        encoded['type'] = obj.get('type') or ''
    elif obj.get('binaryData'):
        encoded['binaryData'] = obj['binaryData']
    digest = hashlib.sha256(_go_json(encoded).encode()).hexdigest()
    # kustomize swaps characters so the suffix cannot spell words.
    return digest[:10].translate(_HASH_TABLE)


def _pod_specs(obj: Obj) -> Iterator[Obj]:
    spec = obj.get('spec')
    if not isinstance(spec, dict):
        return
    kind = obj.get('kind')
    if kind == 'Pod':
        yield spec
    elif kind in _WORKLOADS:
        template = spec.get('template')
        if isinstance(template, dict) and isinstance(template.get('spec'), dict):
            yield template['spec']
    elif kind == 'CronJob':
        job_spec = (spec.get('jobTemplate') or {}).get('spec') or {}
        template = job_spec.get('template') if isinstance(job_spec, dict) else None
        if isinstance(template, dict) and isinstance(template.get('spec'), dict):
            yield template['spec']


def _references(obj: Obj) -> Iterator[tuple[str, Obj, str]]:
    """(referenced kind, holder dict, key) for every name reference kustomize would follow."""
    for pod in _pod_specs(obj):
        if 'serviceAccountName' in pod:
            yield 'ServiceAccount', pod, 'serviceAccountName'
        for secret in pod.get('imagePullSecrets') or []:
            if isinstance(secret, dict):
                yield 'Secret', secret, 'name'
        for volume in pod.get('volumes') or []:
            if not isinstance(volume, dict):
                continue
            if isinstance(volume.get('configMap'), dict):
                yield 'ConfigMap', volume['configMap'], 'name'
            if isinstance(volume.get('secret'), dict):
                yield 'Secret', volume['secret'], 'secretName'
            if isinstance(volume.get('persistentVolumeClaim'), dict):
                yield 'PersistentVolumeClaim', volume['persistentVolumeClaim'], 'claimName'
            for source in (volume.get('projected') or {}).get('sources') or []:
                for kind, key in (('ConfigMap', 'configMap'), ('Secret', 'secret')):
                    if isinstance(source, dict) and isinstance(source.get(key), dict):
                        yield kind, source[key], 'name'
        for field in ('containers', 'initContainers', 'ephemeralContainers'):
            for container in pod.get(field) or []:
                if not isinstance(container, dict):
                    continue
                for env_from in container.get('envFrom') or []:
                    for kind, key in (('ConfigMap', 'configMapRef'), ('Secret', 'secretRef')):
                        if isinstance(env_from, dict) and isinstance(env_from.get(key), dict):
                            yield kind, env_from[key], 'name'
                for env in container.get('env') or []:
                    value_from = env.get('valueFrom') if isinstance(env, dict) else None
                    for kind, key in (('ConfigMap', 'configMapKeyRef'),
                                      ('Secret', 'secretKeyRef')):
                        if isinstance(value_from, dict) and isinstance(value_from.get(key), dict):
                            yield kind, value_from[key], 'name'
    if obj.get('kind') in ('RoleBinding', 'ClusterRoleBinding'):
        role = obj.get('roleRef')
        if isinstance(role, dict) and role.get('kind') in ('Role', 'ClusterRole'):
            yield str(role['kind']), role, 'name'
        for subject in obj.get('subjects') or []:
            if isinstance(subject, dict) and subject.get('kind') == 'ServiceAccount':
                yield 'ServiceAccount', subject, 'name'


def _finish(resources: list[Obj]) -> list[Obj]:
    """Hash suffixes, name references and removal of the internal bookkeeping annotations."""
    for obj in resources:
        annotations = (obj.get('metadata') or {}).get('annotations') or {}
        if annotations.pop(_NEEDS_HASH, None):
            _rename(obj, f'{_name(obj)}-{generator_hash(obj)}')
    renamed: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for obj in resources:
        for old in _internal_list(obj, _PREVIOUS_NAMES):
            renamed.setdefault((str(obj.get('kind')), old), []).append(
                (_namespace(obj), _name(obj)))
    if renamed:
        for obj in resources:
            for kind, holder, key in _references(obj):
                candidates = renamed.get((kind, str(holder.get(key))))
                if not candidates:
                    continue
                own_ns = str(holder.get('namespace') or _namespace(obj))
                new = next((name for ns, name in candidates
                            if kind in _CLUSTER_SCOPED or _same_namespace(ns, own_ns)), None)
                if new is not None:
                    holder[key] = new
    for obj in resources:
        metadata = obj.get('metadata') or {}
        annotations = metadata.get('annotations')
        if isinstance(annotations, dict):
            for key in (_PREVIOUS_NAMES, _PREVIOUS_NAMESPACES, _NEEDS_HASH):
                annotations.pop(key, None)
            if not annotations:
                del metadata['annotations']
    return resources


def _legacy_key(obj: Obj) -> tuple[int, str, str, str]:
    group, version, kind = _gvk(obj)
    if kind in _ORDER_FIRST:
        rank = _ORDER_FIRST.index(kind) - len(_ORDER_FIRST)
    elif kind in _ORDER_LAST:
        rank = 1 + _ORDER_LAST.index(kind)
    else:
        rank = 0
    # kustomize's LegacySortString: group_version_kind, then namespace (unset sorts last), name.
    return rank, f'{group or "~G"}_{version or "~V"}_{kind}', _namespace(obj) or '~X', _name(obj)


def legacy_sort(resources: Iterable[Obj]) -> list[Obj]:
    """kustomize's default ("legacy") output order: namespaces, RBAC, config... webhooks last."""
    return sorted(resources, key=_legacy_key)
