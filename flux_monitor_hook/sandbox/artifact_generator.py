"""Simulated source-watcher (Flux 2.7): ArtifactGenerator copies files from sources into ExternalArtifacts.

Every ExternalArtifact is regenerated whenever a source moves. Its revision is `latest@sha256:<content hash>`,
so an artifact whose copied files did not change keeps its revision while the origin revision in its
metadata moves; kustomize-controller then does not re-apply, as in a real cluster.
"""
from __future__ import annotations

import fnmatch
import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

from flux_monitor_hook.sandbox import conditions
from flux_monitor_hook.sandbox import gitsource
from flux_monitor_hook.sandbox.errors import ApiError
from flux_monitor_hook.sandbox.runtime import Artifact
from flux_monitor_hook.sandbox.runtime import Runtime
from flux_monitor_hook.sandbox.runtime import artifact_status
from flux_monitor_hook.sandbox.runtime import interval_of
from flux_monitor_hook.sandbox.runtime import requested_at

Obj = dict[str, Any]
COMPONENT = 'source-watcher'
ORIGIN_REVISION = 'org.opencontainers.image.revision'


_SOURCE_PLURALS = {'GitRepository': 'gitrepositories', 'OCIRepository': 'ocirepositories', 'Bucket': 'buckets',
                   'HelmChart': 'helmcharts', 'ExternalArtifact': 'externalartifacts'}


class _NotReady(Exception):
    pass


def reconcile(rt: Runtime, namespace: str, name: str) -> None:
    obj = rt.get('ArtifactGenerator', namespace, name)
    if obj is None:
        return
    if obj['metadata'].get('deletionTimestamp'):
        for entry in (obj.get('status') or {}).get('inventory') or []:
            try:
                rt.store.delete(rt.type('ExternalArtifact'), entry.get('namespace'), entry.get('name'))
            except ApiError:
                pass
        rt.remove_finalizer(obj)
        return
    spec = obj.get('spec') or {}
    if spec.get('suspend'):
        return
    obj = rt.ensure_finalizer(obj)
    status = obj.setdefault('status', {})  # the first reconcile has no status yet
    try:
        sources = _sources(rt, obj)
        digest = _sources_digest(sources)
        if _up_to_date(obj, digest):
            # source-watcher's drift check: same sources, same generation, nothing to write.
            _write(rt, obj)
        else:
            previous = {(e.get('namespace'), e.get('name'), e.get('digest')) for e in status.get('inventory') or []}
            inventory = [_generate(rt, obj, output, sources) for output in spec.get('artifacts') or []]
            status['inventory'] = inventory
            status['observedSourcesDigest'] = digest
            conditions.delete(obj, 'Reconciling')
            conditions.set_condition(obj, 'Ready', 'True', 'Succeeded',
                                     f'reconciliation succeeded, generated {len(inventory)} artifact(s)')
            _write(rt, obj)
            changed = [f"{e['namespace']}/{e['name']} ({e['digest']})" for e in inventory
                       if (e['namespace'], e['name'], e['digest']) not in previous]
            if changed:
                rt.event(obj, 'Normal', 'Ready', 'external artifacts reconciled: ' + '\n'.join(changed), COMPONENT)
    except _NotReady as problem:
        message = f'get sources failed: {problem}'
        conditions.set_condition(obj, 'Ready', 'False', 'SourceFetchFailed', message)
        _write(rt, obj)
        rt.event(obj, 'Warning', 'SourceFetchFailed', message, COMPONENT)
    rt.requeue('ArtifactGenerator', namespace, name, interval_of(obj, default='10m'))


def _up_to_date(obj: Obj, digest: str) -> bool:
    ready = conditions.find(obj, 'Ready')
    return (obj.get('status') or {}).get('observedSourcesDigest') == digest and ready is not None and \
        ready.get('status') == 'True' and ready.get('observedGeneration') == obj['metadata'].get('generation')


def _write(rt: Runtime, obj: Obj) -> None:
    requested = requested_at(obj)
    if requested is not None:
        obj['status']['lastHandledReconcileAt'] = requested
    rt.write_status(obj)


def _sources(rt: Runtime, obj: Obj) -> dict[str, tuple[Artifact, Path]]:
    """Alias to (artifact, its files), with source-watcher's observeSources errors."""
    found = {}
    for source in (obj.get('spec') or {}).get('sources') or []:
        kind = source.get('kind', '')
        namespace = source.get('namespace') or obj['metadata']['namespace']
        name = source.get('name', '')
        if kind not in _SOURCE_PLURALS:
            raise _NotReady(f"source `{name}` kind '{kind}' not supported")
        if rt.get(kind, namespace, name) is None:
            raise _NotReady(f'{_SOURCE_PLURALS[kind]}.source.toolkit.fluxcd.io "{name}" not found')
        artifact = rt.artifacts.get((kind, namespace, name))
        if artifact is None:
            raise _NotReady(f"source '{kind}/{namespace}/{name}' is not ready")
        found[source['alias']] = (artifact, _materialise(rt, artifact))
    return found


def _sources_digest(sources: dict[str, tuple[Artifact, Path]]) -> str:
    """Like source-watcher's HashObservedSources (digest and revision of every source; no URLs here)."""
    parts = sorted(f'{alias}=[digest={artifact.digest},revision={artifact.revision}]'
                   for alias, (artifact, _) in sources.items())
    return 'sha256:' + hashlib.sha256('|'.join(parts).encode()).hexdigest()


def _materialise(rt: Runtime, artifact: Artifact) -> Path:
    if artifact.directory is not None:
        return artifact.directory
    if artifact.repo and artifact.commit:
        return gitsource.export_tree(artifact.repo, artifact.commit, rt.workdir / 'git')
    empty = rt.workdir / 'empty'
    empty.mkdir(parents=True, exist_ok=True)
    return empty


def _split_from(text: str) -> tuple[str, str]:
    alias, _, pattern = text.partition('/')
    return alias.lstrip('@'), pattern


def _copy_files(root: Path, pattern: str, destination: str, out: Path, excludes: list[str]) -> None:
    """`from: @alias/<pattern>` into `to: @artifact/<destination>`.

    A single file goes to destination (into it when destination ends with /); a glob or a directory copies
    every file it matches, keeping the path below the pattern's fixed prefix. As with fnmatch, `*` also
    crosses directory separators (source-watcher's doublestar globs are stricter).
    """
    if not any(char in pattern for char in '*?['):
        single = root / pattern
        if single.is_file():
            into_directory = destination.endswith('/') or not destination
            target = out / destination / single.name if into_directory else out / destination
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(single, target)
            return
        pattern = pattern.rstrip('/') + '/**'
    prefix = re.split(r'[*?\[]', pattern, maxsplit=1)[0]
    search_root = root / prefix.rsplit('/', 1)[0] if '/' in prefix else root
    if not search_root.is_dir():
        return
    for path in sorted(search_root.rglob('*')):
        relative = path.relative_to(search_root).as_posix()
        if not path.is_file() or not fnmatch.fnmatchcase(path.relative_to(root).as_posix(), pattern):
            continue
        if any(fnmatch.fnmatchcase(relative, e) or fnmatch.fnmatchcase(path.name, e) for e in excludes):
            continue
        target = out / destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _content_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob('*') if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b'\0')
        digest.update(path.read_bytes() + b'\0')
    return digest.hexdigest()


def _generate(rt: Runtime, obj: Obj, output: Obj, sources: dict[str, tuple[Artifact, Path]]) -> Obj:
    namespace = obj['metadata']['namespace']
    name = output['name']
    staging = rt.workdir / 'generated' / namespace / f'{name}.partial'
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for rule in output.get('copy') or []:
        alias, pattern = _split_from(rule.get('from', ''))
        if alias not in sources:
            raise _NotReady(f"copy from unknown source alias '@{alias}'")
        destination = str(rule.get('to', '@artifact/')).removeprefix('@artifact').lstrip('/')
        _copy_files(sources[alias][1], pattern, destination, staging, list(rule.get('exclude') or []))
    content = _content_hash(staging)
    final = rt.workdir / 'generated' / namespace / name / content
    if not final.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(final)
    else:
        shutil.rmtree(staging, ignore_errors=True)
    revision = f'latest@sha256:{content}'
    revision_alias = str(output.get('revision') or '').lstrip('@')
    if revision_alias in sources:
        revision = sources[revision_alias][0].revision
    metadata: dict[str, str] = {}
    origin_alias = str(output.get('originRevision') or '').lstrip('@')
    if origin_alias in sources:
        # The source's own origin (an OCI artifact pushed from git) wins over its revision.
        origin = sources[origin_alias][0]
        metadata[ORIGIN_REVISION] = origin.metadata.get(ORIGIN_REVISION) or origin.revision
    artifact = Artifact(revision=revision, digest=f'sha256:{content}', directory=final, metadata=metadata,
                        origin_revision=metadata.get(ORIGIN_REVISION))
    rt.artifacts[('ExternalArtifact', namespace, name)] = artifact
    _write_external_artifact(rt, obj, name, artifact)
    return {'name': name, 'namespace': namespace, 'digest': artifact.digest, 'filename': f'{content}.tar.gz'}


def _write_external_artifact(rt: Runtime, generator: Obj, name: str, artifact: Artifact) -> None:
    namespace = generator['metadata']['namespace']
    external_type = rt.type('ExternalArtifact')
    rt.store.apply(external_type, {
        'apiVersion': 'source.toolkit.fluxcd.io/v1', 'kind': 'ExternalArtifact',
        'metadata': {'name': name, 'namespace': namespace,
                     'labels': {'app.kubernetes.io/managed-by': COMPONENT,
                                'source.extensions.fluxcd.io/generator': generator['metadata']['uid']}},
        'spec': {'sourceRef': {'apiVersion': 'source.extensions.fluxcd.io/v1beta1', 'kind': 'ArtifactGenerator',
                               'name': generator['metadata']['name'], 'namespace': namespace}},
    })
    current = rt.get('ExternalArtifact', namespace, name)
    assert current is not None
    status = current.setdefault('status', {})
    status['artifact'] = artifact_status('ExternalArtifact', namespace, name, artifact,
                                         f'{artifact.digest.removeprefix("sha256:")}.tar.gz')
    conditions.set_condition(current, 'Ready', 'True', 'Succeeded', 'Artifact is ready')
    rt.write_status(current)  # ExternalArtifactStatus has no observedGeneration, only the condition's
