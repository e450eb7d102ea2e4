"""Simulated source-controller: GitRepository from local git, HelmRepository, HelmChart, OCIRepository, Bucket.

Status, reasons and messages follow source-controller v1 (see ../shared/flux-status-reference.md §1, §3).
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from flux_monitor_hook.sandbox import conditions
from flux_monitor_hook.sandbox import gitsource
from flux_monitor_hook.sandbox.runtime import Artifact
from flux_monitor_hook.sandbox.runtime import Runtime
from flux_monitor_hook.sandbox.runtime import artifact_status
from flux_monitor_hook.sandbox.runtime import interval_of
from flux_monitor_hook.sandbox.runtime import marker
from flux_monitor_hook.sandbox.runtime import requested_at
from flux_monitor_hook.sandbox.runtime import sha256_digest

Obj = dict[str, Any]
COMPONENT = 'source-controller'


class SourceFailure(Exception):
    def __init__(self, reason: str, message: str, condition: str = 'FetchFailed') -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.condition = condition


def _begin(rt: Runtime, kind: str, namespace: str, name: str) -> Obj | None:
    """The object to reconcile, or None when it is gone, being deleted (finalised here) or suspended."""
    obj = rt.get(kind, namespace, name)
    if obj is None:
        rt.artifacts.pop((kind, namespace, name), None)
        return None
    if obj['metadata'].get('deletionTimestamp'):
        rt.artifacts.pop((kind, namespace, name), None)
        rt.remove_finalizer(obj)
        return None
    if (obj.get('spec') or {}).get('suspend'):
        return None
    return rt.ensure_finalizer(obj)


def _succeed(rt: Runtime, obj: Obj, artifact: Artifact, filename: str, message: str, *,
             reason: str = 'Succeeded', event_reason: str = 'NewArtifact', event_message: str = '',
             annotations_key: str = 'source.toolkit.fluxcd.io') -> None:
    metadata = obj['metadata']
    kind, namespace, name = obj['kind'], metadata['namespace'], metadata['name']
    status = obj.setdefault('status', {})
    previous = (status.get('artifact') or {}).get('revision')
    previous_digest = (status.get('artifact') or {}).get('digest')
    if previous != artifact.revision:
        # Show the fetch in progress first, as the real controller's status does between two patches.
        progress = f"building artifact: new upstream revision '{artifact.revision}'"
        conditions.set_condition(obj, 'Reconciling', 'True', 'Progressing', progress)
        conditions.set_condition(obj, 'ArtifactOutdated', 'True', 'NewRevision',
                                 f"new upstream revision '{artifact.revision}'")
        conditions.set_condition(obj, 'Ready', 'Unknown', 'Progressing', progress)
        rt.write_status(obj)
    rt.artifacts[(kind, namespace, name)] = artifact
    if previous != artifact.revision or 'artifact' not in status:
        status['artifact'] = artifact_status(kind, namespace, name, artifact, filename)
    for stale in ('Reconciling', 'ArtifactOutdated', 'FetchFailed', 'Stalled', 'BuildFailed',
                  'StorageOperationFailed'):
        conditions.delete(obj, stale)
    conditions.set_condition(obj, 'ArtifactInStorage', 'True', 'Succeeded', message)
    conditions.set_condition(obj, 'Ready', 'True', reason, message)
    status['observedGeneration'] = metadata.get('generation', 1)
    _handled(obj)
    rt.write_status(obj)
    if previous_digest != artifact.digest:
        rt.event(obj, 'Normal', event_reason, event_message or message, COMPONENT,
                 {f'{annotations_key}/revision': artifact.revision,
                  f'{annotations_key}/digest': artifact.digest})


def _fail(rt: Runtime, obj: Obj, failure: SourceFailure, *, stalled: bool = False) -> None:
    """Ready=False with the failing condition's reason; the last good artifact stays, as in Flux."""
    for stale in ('Reconciling', 'ArtifactOutdated'):
        conditions.delete(obj, stale)
    conditions.set_condition(obj, failure.condition, 'True', failure.reason, failure.message)
    conditions.set_condition(obj, 'Ready', 'False', failure.reason, failure.message)
    if stalled:
        conditions.set_condition(obj, 'Stalled', 'True', failure.reason, failure.message)
        obj['status']['observedGeneration'] = obj['metadata'].get('generation', 1)
    _handled(obj)
    rt.write_status(obj)
    rt.event(obj, 'Warning', failure.reason, failure.message, COMPONENT)


def _handled(obj: Obj) -> None:
    requested = requested_at(obj)
    if requested is not None:
        obj['status']['lastHandledReconcileAt'] = requested


# -- GitRepository ------------------------------------------------------------------------------------

def reconcile_git_repository(rt: Runtime, namespace: str, name: str) -> None:
    obj = _begin(rt, 'GitRepository', namespace, name)
    if obj is None:
        return
    spec = obj.get('spec') or {}
    url = str(spec.get('url') or '')
    try:
        repo = _local_repository(rt, obj, url)
        _check_credentials(rt, obj, url)
        resolved = gitsource.resolve_ref(repo, spec.get('ref'), url=url)
    except SourceFailure as failure:
        _fail(rt, obj, failure, stalled=failure.reason == 'URLInvalid')
    except gitsource.GitSourceError as error:
        _fail(rt, obj, SourceFailure(error.reason, error.message))
    else:
        artifact = Artifact(revision=resolved.revision, digest=sha256_digest(f'git:{resolved.commit}'),
                            directory=None, repo=repo, commit=resolved.commit)
        subject = gitsource.commit_subject(repo, resolved.commit)
        _succeed(rt, obj, artifact, f'{resolved.commit}.tar.gz', f"stored artifact for revision '{resolved.revision}'",
                 event_message=f"stored artifact for commit '{subject}'")
    rt.requeue('GitRepository', namespace, name, interval_of(obj, default='1m'))


def _local_repository(rt: Runtime, obj: Obj, url: str) -> str:
    if not re.match(r'^(https?|ssh|file)://', url) and not url.startswith('/'):
        raise SourceFailure('URLInvalid', f"git URL scheme is not supported: {url!r}; use http(s), ssh or file",
                            condition='FetchFailed')
    mapped = rt.remotes.get(url) or rt.remotes.get(url.rstrip('/').removesuffix('.git'))
    path = mapped or gitsource.local_path_for_url(url)
    if path is None:
        # One wording for every unreachable remote: go-git's HTTP transport names the info/refs request.
        raise gitsource.unreachable_remote_error(url)
    return path


def _check_credentials(rt: Runtime, obj: Obj, url: str) -> None:
    """spec.secretRef must name an existing Secret; a Secret marked to be rejected plays bad credentials."""
    secret_ref = (obj.get('spec') or {}).get('secretRef')
    if not secret_ref:
        return
    namespace = obj['metadata']['namespace']
    secret_name = secret_ref.get('name', '')
    secret = rt.get('Secret', namespace, secret_name)
    if secret is None:
        raise SourceFailure('AuthenticationFailed', f"failed to get secret '{namespace}/{secret_name}': "
                            f'secrets "{secret_name}" not found')
    if marker(secret, 'reject-credentials') == 'true':
        raise SourceFailure('GitOperationFailed', 'failed to checkout and determine revision: unable to clone '
                            f"'{gitsource.redact_url(url)}': authentication required")


# -- HelmRepository, OCIRepository, Bucket ------------------------------------------------------------

def reconcile_helm_repository(rt: Runtime, namespace: str, name: str) -> None:
    obj = _begin(rt, 'HelmRepository', namespace, name)
    if obj is None:
        return
    spec = obj.get('spec') or {}
    url = str(spec.get('url') or '')
    if marker(obj, 'unreachable') == 'true':
        _fail(rt, obj, SourceFailure('IndexationFailed', f'failed to fetch Helm repository index: failed to '
                                     f'cache index to temporary file: Get "{url}/index.yaml": dial tcp: lookup '
                                     'failed: no such host'))
    elif spec.get('type') == 'oci':
        # OCI Helm repositories are not fetched by source-controller: it only reports them ready.
        conditions.set_condition(obj, 'Ready', 'True', 'Succeeded', 'Helm repository is Ready')
        obj['status']['observedGeneration'] = obj['metadata'].get('generation', 1)
        _handled(obj)
        rt.write_status(obj)
    else:
        digest = sha256_digest(f'index:{url}')
        artifact = Artifact(revision=digest, digest=digest, directory=None)
        _succeed(rt, obj, artifact, f'index-{digest[7:]}.yaml', f"stored artifact: revision '{digest}'",
                 event_message=f"stored fetched index of size 1.024kB from '{url}'")
    rt.requeue('HelmRepository', namespace, name, interval_of(obj, default='10m'))


def reconcile_oci_repository(rt: Runtime, namespace: str, name: str) -> None:
    """No registry is reachable: an artifact is assumed to exist (empty) unless marked unavailable, or
    mapped to a local git repository through the sandbox's remotes."""
    obj = _begin(rt, 'OCIRepository', namespace, name)
    if obj is None:
        return
    spec = obj.get('spec') or {}
    url = str(spec.get('url') or '')
    ref = spec.get('ref') or {}
    try:
        artifact = _oci_artifact(rt, obj, url, ref)
    except SourceFailure as failure:
        _fail(rt, obj, failure)
    else:
        revision = artifact.revision
        _succeed(rt, obj, artifact, f'{artifact.digest[7:]}.tar.gz', f"stored artifact for digest '{revision}'",
                 event_message=f"stored artifact with revision '{revision}' from '{url}'")
    rt.requeue('OCIRepository', namespace, name, interval_of(obj, default='5m'))


def _oci_artifact(rt: Runtime, obj: Obj, url: str, ref: Obj) -> Artifact:
    """The artifact a registry would serve: pinned by ref.digest, else `<tag>@sha256:...`. A semver range
    pulls the lowest version it admits (there is no tag list to pick the highest from)."""
    if marker(obj, 'unavailable') == 'true':
        raise SourceFailure('OCIArtifactPullFailed', f"failed to determine artifact digest: GET "
                                                     f"{url.replace('oci://', 'https://')}: MANIFEST_UNKNOWN: "
                                                     'manifest unknown')
    tag = ref.get('tag') or (chart_version_for(ref['semver']) if ref.get('semver') else 'latest')
    local = rt.remotes.get(url)
    resolved = None
    if local:
        # A mapped artifact is what `flux push artifact` would push from that repository's default branch.
        try:
            resolved = gitsource.resolve_head(local, url=url)
        except gitsource.GitSourceError as error:
            raise SourceFailure('OCIArtifactPullFailed', f'failed to pull artifact from {url}: '
                                                         f'{error.message}') from error
    content = resolved.commit if resolved else ''
    digest = str(ref['digest']) if ref.get('digest') else sha256_digest(f'oci:{url}:{tag}:{content}')
    revision = digest if ref.get('digest') else f'{tag}@{digest}'
    artifact = Artifact(revision=revision, digest=digest, directory=None, repo=local)
    if resolved is not None:
        artifact.commit = resolved.commit
        artifact.metadata = {'org.opencontainers.image.source': url,
                             'org.opencontainers.image.revision': resolved.revision}
        artifact.origin_revision = resolved.revision
    return artifact


def reconcile_bucket(rt: Runtime, namespace: str, name: str) -> None:
    obj = _begin(rt, 'Bucket', namespace, name)
    if obj is None:
        return
    spec = obj.get('spec') or {}
    bucket_name = spec.get('bucketName', '')
    _fail(rt, obj, SourceFailure('BucketOperationFailed', f"failed to confirm existence of '{bucket_name}' bucket: "
                                 f'dial tcp: lookup {spec.get("endpoint", "")}: no such host'))
    rt.requeue('Bucket', namespace, name, interval_of(obj, default='5m'))


# -- HelmChart ----------------------------------------------------------------------------------------

_VERSION = re.compile(r'(\d+)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?')


def chart_version_for(version_spec: str | None) -> str:
    """A concrete version for a HelmRepository chart: the lowest that a simple range admits."""
    match = _VERSION.search(version_spec or '')
    if not match:
        return '1.0.0'
    parts = [part if part and part.isdigit() else '0' for part in match.groups()]
    return '.'.join(parts)


def reconcile_helm_chart(rt: Runtime, namespace: str, name: str) -> None:
    obj = _begin(rt, 'HelmChart', namespace, name)
    if obj is None:
        return
    spec = obj.get('spec') or {}
    source_ref = spec.get('sourceRef') or {}
    source_kind = source_ref.get('kind', '')
    chart = str(spec.get('chart') or '')
    source = rt.get(source_kind, namespace, source_ref.get('name', '')) if source_kind in (
        'HelmRepository', 'GitRepository', 'Bucket') else None
    source_artifact = (source or {}).get('status', {}).get('artifact') if source else None
    if source is None:
        _fail(rt, obj, SourceFailure('NoSourceArtifact', f"failed to get source: {source_kind.lower()}s"
                                     f".source.toolkit.fluxcd.io \"{source_ref.get('name', '')}\" not found"))
    elif source_kind != 'HelmRepository' and not source_artifact:
        _fail(rt, obj, SourceFailure('NoSourceArtifact', 'no artifact available for '
                                     f"{source_kind} source '{source_ref.get('name', '')}'"))
    elif source_kind == 'HelmRepository':
        _pull_chart(rt, obj, source, chart, spec)
    else:
        _package_chart(rt, obj, source_kind, source_ref.get('name', ''), chart, spec)
    rt.requeue('HelmChart', namespace, name, interval_of(obj, default='10m'))


def _pull_chart(rt: Runtime, obj: Obj, repository: Obj, chart: str, spec: Obj) -> None:
    missing = {c.strip() for c in (marker(repository, 'missing-charts') or '').split(',') if c.strip()}
    if chart in missing or not conditions.is_true(repository, 'Ready'):
        reason = 'ChartPullError'
        message = (f"chart pull error: failed to get chart version for remote reference: no '{chart}' chart with "
                   f"version matching '{spec.get('version') or '*'}' found")
        _fail(rt, obj, SourceFailure(reason, message))
        return
    version = chart_version_for(spec.get('version'))
    if spec.get('valuesFiles'):
        version += f'+{obj["metadata"].get("generation", 1)}'
    artifact = Artifact(revision=version, digest=sha256_digest(f'chart:{chart}:{version}'), directory=None)
    obj.setdefault('status', {})['observedChartName'] = chart
    obj['status']['observedSourceArtifactRevision'] = (repository.get('status') or {}).get(
        'artifact', {}).get('revision', '')
    message = f"pulled '{chart}' chart with version '{version}'"
    _succeed(rt, obj, artifact, f'{chart}-{version}.tgz', message, reason='ChartPullSucceeded',
             event_reason='ChartPullSucceeded', event_message=message)


def _package_chart(rt: Runtime, obj: Obj, source_kind: str, source_name: str, chart_path: str, spec: Obj) -> None:
    namespace = obj['metadata']['namespace']
    source_artifact = rt.artifacts.get((source_kind, namespace, source_name))
    source_revision = obj_revision = ''
    if source_artifact is not None:
        source_revision = source_artifact.revision
    chart_yaml = None
    if source_artifact is not None and source_artifact.repo and source_artifact.commit:
        chart_yaml = gitsource.read_file_at(source_artifact.repo, source_artifact.commit,
                                            f'{chart_path.strip("./").rstrip("/")}/Chart.yaml')
    if chart_yaml is None:
        _fail(rt, obj, SourceFailure('ChartPackageError', f"chart package error: failed to load chart: no Chart.yaml "
                                     f"found at path '{chart_path}' in {source_kind} '{namespace}/{source_name}'"))
        return
    try:
        meta = yaml.safe_load(chart_yaml) or {}
        chart_name, version = str(meta['name']), str(meta['version'])
    except (yaml.YAMLError, KeyError, TypeError) as error:
        _fail(rt, obj, SourceFailure('ChartPackageError', f'chart package error: invalid Chart.yaml: {error}'))
        return
    suffixes = []
    if spec.get('valuesFiles'):
        suffixes.append(str(obj['metadata'].get('generation', 1)))
    if spec.get('reconcileStrategy') == 'Revision' and source_artifact is not None and source_artifact.commit:
        suffixes.append(source_artifact.commit[:12])
    if suffixes:
        version += '+' + '.'.join(reversed(suffixes)) if len(suffixes) == 2 else '+' + suffixes[0]
    obj_revision = version
    artifact = Artifact(revision=obj_revision, digest=sha256_digest(f'chart:{chart_name}:{version}:{source_revision}'),
                        directory=None)
    status = obj.setdefault('status', {})
    status['observedChartName'] = chart_name
    status['observedSourceArtifactRevision'] = source_revision
    if spec.get('valuesFiles'):
        status['observedValuesFiles'] = list(spec['valuesFiles'])
    message = f"packaged '{chart_name}' chart with version '{version}'"
    _succeed(rt, obj, artifact, f'{chart_name}-{version}.tgz', message, reason='ChartPackageSucceeded',
             event_reason='ChartPackageSucceeded', event_message=message)
