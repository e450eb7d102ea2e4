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
    try:
        sources = _sources(rt, obj)
        inventory = [_generate(rt, obj, output, sources) for output in spec.get('artifacts') or []]
    except _NotReady as problem:
        conditions.set_condition(obj, 'Ready', 'False', 'SourceFetchFailed', str(problem))
        _write(rt, obj)
        rt.event(obj, 'Warning', 'SourceFetchFailed', str(problem), COMPONENT)
    else:
        obj.setdefault('status', {})['inventory'] = inventory  # the first reconcile has no status yet
        conditions.delete(obj, 'Reconciling')
        conditions.set_condition(obj, 'Ready', 'True', 'Succeeded',
                                 f'reconciliation succeeded, generated {len(inventory)} artifact(s)')
        obj['status']['observedGeneration'] = obj['metadata'].get('generation', 1)
        _write(rt, obj)
    rt.requeue('ArtifactGenerator', namespace, name, interval_of(obj, default='10m'))


def _write(rt: Runtime, obj: Obj) -> None:
    requested = requested_at(obj)
    if requested is not None:
        obj['status']['lastHandledReconcileAt'] = requested
    rt.write_status(obj)


def _sources(rt: Runtime, obj: Obj) -> dict[str, tuple[Artifact, Path]]:
    found = {}
    for source in (obj.get('spec') or {}).get('sources') or []:
        kind = source.get('kind', '')
        namespace = source.get('namespace') or obj['metadata']['namespace']
        artifact = rt.artifacts.get((kind, namespace, source.get('name', '')))
        if artifact is None:
            raise _NotReady(f"source '{kind}/{namespace}/{source.get('name')}' is not ready: artifact not found")
        found[source['alias']] = (artifact, _materialise(rt, artifact))
    return found


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
        metadata[ORIGIN_REVISION] = sources[origin_alias][0].revision
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
                     'labels': {'source.extensions.fluxcd.io/generator': generator['metadata']['name']}},
        'spec': {'sourceRef': {'apiVersion': 'source.extensions.fluxcd.io/v1beta1', 'kind': 'ArtifactGenerator',
                               'name': generator['metadata']['name'], 'namespace': namespace}},
    })
    current = rt.get('ExternalArtifact', namespace, name)
    assert current is not None
    status = current.setdefault('status', {})
    status['artifact'] = artifact_status('ExternalArtifact', namespace, name, artifact,
                                         f'{artifact.digest.removeprefix("sha256:")}.tar.gz')
    conditions.set_condition(current, 'Ready', 'True', 'Succeeded',
                             f"stored artifact for revision '{artifact.revision}'")
    status['observedGeneration'] = current['metadata'].get('generation', 1)
    rt.write_status(current)
