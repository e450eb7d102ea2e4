"""Explain a Flux failure message: what went wrong, which objects, and what to do next.

Pure: no I/O, no clock, no environment. `explain()` turns the text of a Ready/Stalled condition, an
event, a controller log line or `flux` CLI output into a `Diagnosis`.

How it decides, in order:
1. Normalise the text the way people paste it (CLI glyphs, log timestamps, JSON log lines, HTML
   entities, `...` truncation) and cap the work at `MAX_CHARS`.
2. Classify with an ordered rule table. Rules that name a specific remedy (immutable fields,
   missing CRDs, dependencies, SOPS ...) come first and beat the Flux reason; envelopes (Helm
   action failed, kustomize build failed, artifact download failed) come next, so their inner
   transport error does not hide which stage failed; bare transport errors (auth, network,
   timeout) come last.
3. Extract every object the message names, the field, and build advice from those real names.

Every regex is compiled once at import, anchored on literal text and uses bounded repetition, so
the cost stays linear in the (capped) input.
"""
from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from typing import NamedTuple

from flux_monitor_hook.git_urls import redact_text

# Flux messages are at most a few KB, even with many joined errors. Past this we only read the
# prefix, which bounds the time a pasted log file or a hostile input can take.
MAX_CHARS = 16_384

CATEGORIES: tuple[str, ...] = (
    'immutable-field', 'validation', 'build', 'health-check', 'dependency', 'missing-crd',
    'namespace', 'prune', 'decryption', 'substitution', 'source-not-ready', 'auth', 'network',
    'ref-not-found', 'helm-install', 'helm-upgrade', 'helm-test', 'helm-chart',
    'retries-exhausted', 'timeout', 'other',
)


@dataclass(frozen=True)
class Diagnosis:
    category: str
    objects: tuple[str, ...]
    field: str | None
    summary: str
    suggestions: tuple[str, ...]
    docs: tuple[str, ...]

    @property
    def object(self) -> str | None:
        return self.objects[0] if self.objects else None

    def to_json(self) -> dict[str, Any]:
        return {
            'category': self.category,
            'object': self.object,
            'objects': list(self.objects),
            'field': self.field,
            'summary': self.summary,
            'suggestions': list(self.suggestions),
            'docs': list(self.docs),
        }


# --------------------------------------------------------------------------------------------------
# Objects

class _Obj(NamedTuple):
    kind: str  # '' when the message names only the object
    namespace: str  # '' when cluster-scoped or not stated
    name: str

    @property
    def ref(self) -> str:
        return '/'.join(part for part in (self.kind, self.namespace, self.name) if part)


# kubectl resource names (plural, singular, short) as they appear in apiserver and kstatus messages.
_RESOURCE_KINDS = {
    'deployment': 'Deployment', 'deployments': 'Deployment', 'statefulset': 'StatefulSet',
    'statefulsets': 'StatefulSet', 'daemonset': 'DaemonSet', 'daemonsets': 'DaemonSet',
    'replicaset': 'ReplicaSet', 'replicasets': 'ReplicaSet', 'job': 'Job', 'jobs': 'Job',
    'cronjob': 'CronJob', 'cronjobs': 'CronJob', 'pod': 'Pod', 'pods': 'Pod',
    'service': 'Service', 'services': 'Service', 'secret': 'Secret', 'secrets': 'Secret',
    'configmap': 'ConfigMap', 'configmaps': 'ConfigMap', 'namespace': 'Namespace',
    'namespaces': 'Namespace', 'serviceaccount': 'ServiceAccount',
    'serviceaccounts': 'ServiceAccount',
    'ingress': 'Ingress', 'ingresses': 'Ingress', 'persistentvolumeclaim': 'PersistentVolumeClaim',
    'persistentvolumeclaims': 'PersistentVolumeClaim', 'customresourcedefinition':
    'CustomResourceDefinition', 'customresourcedefinitions': 'CustomResourceDefinition',
    'kustomization': 'Kustomization', 'kustomizations': 'Kustomization',
    'helmrelease': 'HelmRelease', 'helmreleases': 'HelmRelease', 'helmchart': 'HelmChart',
    'helmcharts': 'HelmChart', 'helmrepository': 'HelmRepository',
    'helmrepositories': 'HelmRepository',
    'gitrepository': 'GitRepository', 'gitrepositories': 'GitRepository',
    'ocirepository': 'OCIRepository', 'ocirepositories': 'OCIRepository', 'bucket': 'Bucket',
    'buckets': 'Bucket', 'externalartifact': 'ExternalArtifact',
    'externalartifacts': 'ExternalArtifact',
    # short names people pass to --kind
    'ks': 'Kustomization', 'hr': 'HelmRelease', 'hc': 'HelmChart', 'gitrepo': 'GitRepository',
    'ocirepo': 'OCIRepository', 'helmrepo': 'HelmRepository',
}
_CLUSTER_SCOPED = frozenset({
    'Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'StorageClass',
    'PersistentVolume', 'PriorityClass', 'IngressClass', 'APIService', 'Node', 'CSIDriver',
    'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration', 'RuntimeClass',
})
_FLUX_KINDS = frozenset({
    'Kustomization', 'HelmRelease', 'GitRepository', 'OCIRepository', 'HelmRepository', 'HelmChart',
    'Bucket', 'ExternalArtifact',
})
# `flux get|reconcile|events` nouns.
_FLUX_NOUN = {
    'Kustomization': 'kustomization', 'HelmRelease': 'helmrelease', 'GitRepository': 'source git',
    'OCIRepository': 'source oci', 'HelmRepository': 'source helm', 'HelmChart': 'source chart',
    'Bucket': 'source bucket',
}

_NAME = r'[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?'
_NS = r'[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?'
# `Kind/ns/name` or `Kind/name` as printed by Flux (ssa FmtUnstructured, kstatus). Not preceded by
# a path character, so URL segments like github.com/Org/repo are not taken for objects.
# (The lookbehind sits after the first letter so the regex engine can skip ahead to capitals.)
_OBJ_REF_RE = re.compile(
    rf'([A-Z](?<![\w/.@:~-][A-Z])[A-Za-z0-9]{{1,62}})/(?:({_NS})/)?({_NAME})(?![\w/-])')
# The two forms below are found by their rare quoted part first; _kind_before() then reads the
# word in front, which is much cheaper than a regex that starts at every word.
# HelmChart 'ns/name' is not ready (hc), deployments.apps 'ns/name' (kc < 0.8 health checks),
# secret 'ns/name' (sc).
_QUOTED_PAIR_RE = re.compile(rf"'({_NS})/({_NAME})'")
# Deployment.apps "x" is invalid / secrets "x" not found / Service "x" in namespace "y" exists ...
_API_NAME_RE = re.compile(
    rf'"({_NAME})"(?: in namespace "([a-z0-9-]{{1,63}})")?'
    r' (?:is invalid|is forbidden|already exists|not found|exists and cannot be imported)')
_KIND_WORD_RE = re.compile(r'[A-Za-z][A-Za-z0-9]{1,62}')
_RESOURCE_MAPPING_RE = re.compile(
    r'resource mapping not found for name: "([^"\s]{1,253})" namespace: "([a-z0-9-]{0,63})"'
    r' from "[^"]{0,300}": no matches for kind "([A-Za-z0-9]{1,63})"')
# The name is greedy and may end in `.v<N>` (release revision), which _find_release() drops.
_RELEASE_RE = re.compile(
    rf'(?:for release|to previous release) ({_NS})/({_NAME})'
    r'(?: with chart ([^\s@]{1,200})@([^\s:]{1,100}))?')
_RELEASE_REVISION_RE = re.compile(r'\.v\d{1,6}$')
_DEPENDENCY_RE = re.compile(
    r"dependency '([^'\s]{1,300})'|'([^'\s]{1,300})' dependency")
_TARGET_RE = re.compile(r"(?:decryption|substitution|post build) failed for '([^'\s]{1,300})'")
_DECRYPT_FORMAT_RE = re.compile(
    rf"failed to (?:decrypt and format|unmarshal decrypted) '({_NS})/({_NAME})'"
    r' ([A-Z][A-Za-z]{1,62})')
_ARTIFACT_URL_RE = re.compile(
    rf'/(gitrepository|ocirepository|bucket|helmchart|externalartifact)/({_NS})/({_NAME})/')
_SECRET_REF_RE = re.compile(rf"(?:secret|Secret) '(?:({_NS})/)?({_NAME})'")
_STATUS_RE = re.compile(rf"([A-Z][A-Za-z0-9]{{1,62}}/(?:{_NS}/)?{_NAME}) status: '(\w{{1,20}})'")

# --------------------------------------------------------------------------------------------------
# Normalisation

_TS = r'\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?'
# One log line prefix: timestamp (RFC 3339 or klog), optional level, optional `Kind/name.ns - `
# (controller-runtime text logs of Flux < 0.26).
_LOG_PREFIX_RE = re.compile(
    rf'^[ \t]*(?:{_TS}'
    r'|[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d{1,9}[ \t]+\d{1,9} [\w.-]{1,100}:\d{1,6}\])'
    r'[ \t]+(?:(?:info|error|warn|warning|debug|fatal|INFO|ERROR|WARN|WARNING|DEBUG|FATAL)[ \t]+)?'
    rf'(?:([A-Z][A-Za-z0-9]{{1,62}})/({_NAME})[ \t]+-[ \t]+)?',
    re.M)
# A row of `flux events` / `kubectl get events`: [age] TYPE REASON KIND/NAME MESSAGE.
_EVENT_ROW_RE = re.compile(
    r'[ \t]*(?:\S{1,40}[ \t]+)?(?:Normal|Warning)[ \t]+([A-Z][A-Za-z]{1,62})[ \t]+'
    rf'([A-Za-z][A-Za-z0-9]{{1,62}})/({_NAME})[ \t]+')
_GLYPHS = frozenset('✗✘►⚠✔')
_GLYPH_RE = re.compile(r'^[ \t]*[✗✘►⚠✔][ \t]*', re.M)
_LOG_HINT_RE = re.compile(r'[ \t]*(?:\d{4}-\d\d-\d\d[T ]\d|[IWEF]\d{4} \d)')
_LOG_LINE_HINT_RE = re.compile(r'\n[ \t]*(?:\d{4}-\d\d-\d\d[T ]\d|[IWEF]\d{4} \d)')
_PREFIX_RE = re.compile(
    r'(?:[A-Z][A-Za-z0-9]{1,62} )?reconciliation failed'
    r'(?: after [\w.]{1,40}, next try in [\w.]{1,40})?[:,]?[ \t]*'
    r'|reconciler error:?[ \t]*|error:[ \t]+(?=\S)',
    re.I)
_SPACES_RE = re.compile(r'\s+')


@dataclass
class _Ctx:
    text: str  # normalised message, original case
    low: str  # text.lower(), what the rules match against
    kind: str | None
    reason: str | None
    reporter: _Obj | None  # the object that reported the message, when the message says so
    truncated: bool
    release: _Release | None = None  # the Helm release a helm-controller message is about
    named_field: tuple[str, str] | None = None  # (field, problem) when the message names one


def _canonical_kind(kind: str) -> str:
    if kind in _RESOURCE_KINDS.values():
        return kind
    return _RESOURCE_KINDS.get(kind.lower(), kind)


def _split_name_ns(kind: str, name_dot_ns: str) -> _Obj:
    # Old controller logs print `name.namespace`; a namespace has no dots, a name may.
    name, dot, namespace = name_dot_ns.rpartition('.')
    if not dot:
        return _Obj(_canonical_kind(kind), '', name_dot_ns)
    return _Obj(_canonical_kind(kind), namespace, name)


def _from_json_log(text: str) -> tuple[str, _Obj | None]:
    # controller-runtime JSON logs: {"msg": ..., "error": ..., "controllerKind": ..., "name": ...}
    try:
        record = json.loads(text)
    except ValueError:
        return text, None
    if not isinstance(record, dict):
        return text, None
    parts = [str(record[key]) for key in ('msg', 'error') if isinstance(record.get(key), str)]
    kind = record.get('controllerKind')
    name = record.get('name')
    namespace = record.get('namespace')
    reporter = None
    if isinstance(kind, str) and isinstance(name, str):
        reporter = _Obj(kind, namespace if isinstance(namespace, str) else '', name)
    return ': '.join(parts) or text, reporter


def _strip_prefixes(text: str) -> str:
    for _ in range(4):  # `✗ HelmRelease reconciliation failed: error: ...` stacks a few
        match = _PREFIX_RE.match(text)
        if not match or not match.group(0):
            break
        text = text[match.end():]
    return text


def _normalize(message: str, kind: str | None, reason: str | None,
               reporter_ref: tuple[str, str] | None = None) -> _Ctx:
    text = message[:MAX_CHARS]
    for _ in range(2):  # entities can be escaped twice (&amp;#34;) by web UIs
        if '&' not in text:
            break
        text = html.unescape(text)
    if '\\"' in text:  # copied out of JSON / kubectl -o json
        text = text.replace('\\"', '"')
        if '\n' not in text:
            text = text.replace('\\n', '\n')
    # A URL in the message may carry credentials (`https://user:token@host`): everything shown derives from
    # this text, so they go here.
    text = redact_text(text).strip()
    reporter: _Obj | None = None
    if text.startswith('{'):
        text, reporter = _from_json_log(text)
    event = _EVENT_ROW_RE.match(text)
    if event:
        reason = reason or event.group(1)
        reporter = _Obj(_canonical_kind(event.group(2)), '', event.group(3))
        text = text[event.end():]
    if not text.isascii() and _GLYPHS.intersection(text[:2000]):
        text = _GLYPH_RE.sub('', text)
    if _LOG_HINT_RE.match(text) or ('\n' in text and _LOG_LINE_HINT_RE.search(text)):
        log = _LOG_PREFIX_RE.search(text)
        if log and log.group(1) and reporter is None:
            reporter = _split_name_ns(log.group(1), log.group(2))
        text = _LOG_PREFIX_RE.sub('', text).strip()
    text = _strip_prefixes(text)
    truncated = False
    if text.endswith(('...', '…')):
        truncated = True
        text = text.rstrip('.…').rstrip()
    if kind:
        kind = _canonical_kind(kind.strip())
        if reporter is not None and not reporter.kind:
            reporter = reporter._replace(kind=kind)
        if reporter is None and reporter_ref is not None:
            reporter = _Obj(kind, reporter_ref[0], reporter_ref[1])
    low = text.lower()
    return _Ctx(text, low, kind or None, (reason or '').strip() or None, reporter, truncated,
                _find_release(text, low), _field_match(text))


# --------------------------------------------------------------------------------------------------
# Classification


class _Rule(NamedTuple):
    category: str
    needles: tuple[str, ...]  # cheap substring pre-check; any one must be present
    pattern: re.Pattern[str] | None  # then this must match (None: the needle is enough)
    strong: bool  # wins over the category the Flux reason points to


def _rule(category: str, needles: Iterable[str], pattern: str | None = None, *,
          strong: bool = False) -> _Rule:
    return _Rule(category, tuple(needles), re.compile(pattern) if pattern else None, strong)


_RULES: tuple[_Rule, ...] = (
    # Specific causes with specific remedies: these win over envelopes and over the reason.
    _rule('dependency', ('dependenc',),
          r"dependency '[^']{1,300}' (?:is not ready|revision is not up to date|not found"
          r"|does not exist)|dependencies do not meet ready condition|unable to get '[^']{1,300}'"
          r" dependency|'[^']{1,300}' dependency does not exist|must wait for dependency",
          strong=True),
    _rule('retries-exhausted', ('retries', 'attempt'),
          r'retries exhausted|exceeded maximum retries'
          r'|failed to (?:install|upgrade|test|rollback|uninstall) after \d{1,6} attempt',
          strong=True),
    _rule('decryption', ('decrypt', 'sops'),
          r'decryption failed|failed to decrypt|sops metadata not found|sops data key'
          r'|is sops encrypted|error decrypting|decryption secret|no identity matched'
          r'|could not decrypt|failed to unmarshal decrypted', strong=True),
    _rule('substitution', ('substitut', 'post build', 'closing brace', 'variable'),
          r'var(?:iable)? substitution failed|post build failed for|substitute ?from'
          r'|missing closing brace|unable to parse variable name|bad substitution', strong=True),
    _rule('immutable-field', ('immutable', 'may not', 'cannot be changed', 'fields other than'),
          r'immutable|may not change|may not be changed|cannot be changed|fields other than',
          strong=True),
    _rule('namespace', ('namespace',),
          r'namespace not specified|namespaces "[^"]{1,253}" not found'
          r'|namespace of the provided object does not match|because it is being terminated'
          r'|namespace \S{1,253} is being terminated', strong=True),
    _rule('missing-crd', ('no matches for kind', 'resource mapping not found', 'resource type',
                          'could not find the requested resource', 'is registered',
                          'unable to recognize', 'api group resources'),
          r"no matches for kind|resource mapping not found|doesn't have a resource type"
          r'|could not find the requested resource|no kind "[^"]{1,100}" is registered'
          r'|unable to recognize|failed to get api group resources', strong=True),
    _rule('health-check', ('health', 'timeout waiting for: ['),
          r'health ?checks? (?:failed|timed out|canceled|cancelled)|timeout waiting for: \['
          r'|running health checks', strong=True),
    _rule('prune', ('prun', 'garbage collect', 'delete failed', 'deletion failed'),
          r'prun(?:e|ing) failed|unable to prune|garbage collection (?:for|of) (?!artifacts)'
          r'|garbage collection failed|failed to garbage collect|delete failed|deletion failed',
          strong=True),
    _rule('build', ('kustomiz', 'accumulat', 'symlink', 'must build at directory',
                    'failed to decode kubernetes'),
          r'kustomize build failed|kustomization path not found'
          r'|accumulat(?:ing|ion) (?:resources|err)|must build at directory'
          r'|failed to decode kubernetes apiversion|evaluating symlink'
          r'|evalsymlink failure|multiple kustomization files|failed to generate kustomization'
          r"|unable to find one of 'kustomization", strong=True),
    # Envelopes: the stage that failed, whatever the inner error.
    _rule('helm-test', ('test',), r'helm tests? failed|test failed for release'),
    _rule('helm-install', ('install', 're-use a name'),
          r'helm install failed|\binstall failed|cannot re-use a name that is still in use'
          r'|unable to continue with install'),
    _rule('helm-upgrade', ('upgrade', 'rollback', 'another operation', 'no deployed releases',
                           'continue with update', 'uninstall failed'),
          r'helm upgrade failed|\bupgrade failed|helm rollback|rollback to previous release'
          r'|another operation \(install/upgrade/rollback\) is in progress|has no deployed releases'
          r'|unable to continue with update|uninstall failed'),
    _rule('validation', ('invalid', 'required value', 'unsupported value', 'declared in schema',
                         'validationerror', 'validating', 'strict decoding', 'unknown field',
                         'denied the request', 'typed patch', 'validation'),
          r'dry-run failed \(invalid\)|reason: invalid|" is invalid|is invalid: |invalid value'
          r'|required value|unsupported value|field not declared in schema|validationerror\('
          r'|error validating|strict decoding error|unknown field|denied the request'
          r'|failed to create typed patch object|validation failed|invalid cel'),
    _rule('source-not-ready', ('artifact', 'source', 'not ready', 'layer', 'must wait for chart'),
          r'failed to download artifact|artifact not found|no artifact available'
          r'|does not have an artifact|(?:gitrepository|ocirepository|bucket|helmchart'
          r"|helmrepository|externalartifact) '[^']{1,300}' (?:is )?not (?:ready|found)"
          r"|source '[^']{1,300}' not found|source (?:is )?not ready|unable to get source"
          r'|must wait for chart|failed to (?:extract|copy|find) (?:the first )?layer'
          r'|no layers found in artifact|media type of layer'),
    # Bare transport and credential errors of the sources.
    _rule('auth', ('error: certificate',), r'ssh://|git@'),  # libgit2 host-key check
    _rule('auth', ('auth', 'password', 'publickey', 'username', 'denied', 'forbidden', 'secret',
                   'host', 'arn', 'access', 'token', 'credential', 'signature', 'cross-namespace'),
          r'authentication required|authentication failed|unable to authenticate'
          r'|failed to authenticate|invalid username|invalid credentials'
          r'|permission denied \(publickey|could not read username|unauthori[sz]ed'
          r'|\b403 forbidden|status code 403|\bdenied\b|accessdenied|failed to get secret'
          r'|secrets? "[^"]{1,253}" not found|knownhosts|host key|\barn\b|invalidaccesskeyid'
          r'|signaturedoesnotmatch|security token|expiredtoken|token (?:is )?expired'
          r'|failed to get credential|no basic auth credentials|is forbidden: user'
          r"|cross-namespace references|can't access '|not authori[sz]ed"),
    _rule('ref-not-found', ('not found', 'find remote ref', 'unknown', 'resolve', 'empty',
                            'no match', 'artifact tag'),
          r"couldn't find remote ref|could not find remote ref|\breference not found"
          r'|unable to resolve (?:ref|reference|revision)|\bobject not found'
          r'|no match found for semver|(?:manifest|name)[ _]unknown|unknown revision'
          r'|repository not found|repository is empty|bucket \'[^\']{1,300}\' not found'
          r"|failed to determine the artifact tag|(?:tag|branch|revision|commit) '[^']{1,200}'"
          r' not found'),
    _rule('network', ('connect', 'host', 'timeout', 'timed out', 'reset', 'unreachable', 'route',
                      'x509', 'tls', 'certificate', 'misbehaving', 'name resolution', 'proxy',
                      'pipe', 'dial', 'gateway', 'unavailable', 'eof', 'resolve'),
          r'connection refused|no such host|i/o timeout|connection timed out|connection reset'
          r'|network is unreachable|no route to host|x509: |tls: |tls handshake'
          r'|certificate signed by unknown authority|server misbehaving'
          r'|temporary failure in name resolution|proxyconnect|broken pipe|dial tcp|bad gateway'
          r'|gateway timeout|service unavailable|unexpected eof|error: certificate'
          r'|ssl certificate problem|could not resolve host'),
    _rule('timeout', ('deadline', 'timed out', 'timeout'),
          r'deadline exceeded|timed out|timeout(?! of \d)'),  # not "with a timeout of 5m"
    # Content that only says what kind of thing broke.
    _rule('helm-chart', ('chart', 'yaml parse error', 'template', 'parse error', 'index'),
          r'chart pull error|failed to get chart version|could not locate a version matching'
          r'|no chart version found|no chart name found|chart\.yaml file is missing'
          r'|failed to load chart|could not load chart|invalid chart reference|chart not found'
          r'|failed to download chart|yaml parse error on|parse error at \('
          r'|template: [\w.-]{1,200}/templates/|chart dependencies|chart requires kubeversion'
          r'|repository index|no cached repo'),
    _rule('build', ('yaml', 'unmarshal', 'decode', 'no such file'),
          r'yaml: line \d|error converting yaml to json|mapping values are not allowed'
          r'|did not find expected|cannot unmarshal|failed to decode|no such file or directory'),
)

# Flux condition reasons (kc, hc, sc; every API version) and the category they imply.
_REASONS = {
    'dependencynotready': 'dependency',
    'healthcheckfailed': 'health-check',
    'healthcheckcanceled': 'health-check',
    'retriesexceeded': 'retries-exhausted',
    'upgradefailed': 'helm-upgrade',
    'rollbackfailed': 'helm-upgrade',
    'uninstallfailed': 'helm-upgrade',
    'missingrollbacktarget': 'helm-upgrade',
    'installfailed': 'helm-install',
    'testfailed': 'helm-test',
    'artifactfailed': 'source-not-ready',
    'sourcenotready': 'source-not-ready',
    'nosourceartifact': 'source-not-ready',
    'buildfailed': 'build',
    'prunefailed': 'prune',
    'authenticationfailed': 'auth',
    'accessdenied': 'auth',
    'chartpullfailed': 'helm-chart',
    'chartpackagefailed': 'helm-chart',
    'urlinvalid': 'validation',
    'invalidcelexpression': 'validation',
}


def _classify(ctx: _Ctx) -> str:
    found: _Rule | None = None
    low = ctx.low
    for rule in _RULES:
        for needle in rule.needles:  # a plain loop: this runs ~20 times per message
            if needle in low:
                break
        else:
            continue
        if rule.pattern is None:
            found = rule
            break
        if rule.pattern.search(low):
            found = rule
            break
    hinted = _REASONS.get((ctx.reason or '').lower())
    if found is not None and (found.strong or hinted is None):
        return found.category
    return hinted or 'other'


# --------------------------------------------------------------------------------------------------
# Extraction


def _kind_from_gvk(target: str) -> _Obj:
    # kc >= 1.5 prints '<group>_<version>_<Kind>/<name>' (kustomize Gvk.String()); older '<name>'.
    gvk, slash, name = target.rpartition('/')
    if not slash:
        return _Obj('', '', target)
    kind = gvk.rpartition('_')[2] if '_' in gvk else ''
    return _Obj(kind, '', name)


def _dependency_kind(ctx: _Ctx) -> str:
    for kind in (ctx.reporter.kind if ctx.reporter else None, ctx.kind):
        if kind in ('Kustomization', 'HelmRelease'):
            return kind
    return 'HelmRelease' if 'helmrelease' in ctx.low else 'Kustomization'


class _Release(NamedTuple):
    obj: _Obj
    chart: str  # 'name@version', or '' when the message does not say
    start: int


def _find_release(text: str, low: str) -> _Release | None:
    if 'release ' not in low:
        return None
    m = _RELEASE_RE.search(text)
    if not m:
        return None
    name = _RELEASE_REVISION_RE.sub('', m.group(2))
    chart = f'{m.group(3)}@{m.group(4)}' if m.group(3) else ''
    return _Release(_Obj('HelmRelease', m.group(1), name), chart, m.start())


def _kind_before(text: str, quote: int) -> str | None:
    """The Kind named by the word just before a quoted name: `Deployment.apps "x"` or
    `deployments.apps 'ns/x'` give Deployment; words that are not kinds give None."""
    if quote < 2 or text[quote - 1] != ' ':
        return None
    word = text[max(0, quote - 300):quote - 1].rsplit(None, 1)[-1].lstrip('[(')
    word = word.split('.', 1)[0]
    if not _KIND_WORD_RE.fullmatch(word):
        return None
    if word[0].isupper():
        return word
    return _RESOURCE_KINDS.get(word)  # a lowercase resource name we know, or nothing


def _found_objects(ctx: _Ctx) -> list[tuple[int, int, _Obj]]:
    """(rank, position, object) for every object named; rank 0 is the object at fault."""
    text = ctx.text
    found: list[tuple[int, int, _Obj]] = []
    if '/' in text:
        for m in _OBJ_REF_RE.finditer(text):
            if not m.group(1).isupper() and not (ctx.truncated and m.end() == len(text)):
                found.append((0, m.start(), _Obj(m.group(1), m.group(2) or '', m.group(3))))
    if "'" in text:
        for m in _QUOTED_PAIR_RE.finditer(text):
            kind = _kind_before(text, m.start())
            if kind:
                found.append((0, m.start(), _Obj(kind, m.group(1), m.group(2))))
        for m in _TARGET_RE.finditer(text):
            found.append((0, m.start(), _kind_from_gvk(m.group(1))))
        for m in _DECRYPT_FORMAT_RE.finditer(text):
            found.append((0, m.start(), _Obj(m.group(3), m.group(1), m.group(2))))
        if 'secret' in ctx.low:
            for m in _SECRET_REF_RE.finditer(text):
                found.append((0, m.start(), _Obj('Secret', m.group(1) or '', m.group(2))))
        if 'dependenc' in ctx.low:
            kind = _dependency_kind(ctx)
            for m in _DEPENDENCY_RE.finditer(text):
                namespace, _, name = (m.group(1) or m.group(2)).rpartition('/')
                found.append((0, m.start(), _Obj(kind, namespace, name)))
    if '"' in text:
        release = ctx.release
        for m in _API_NAME_RE.finditer(text):
            kind = _kind_before(text, m.start())
            if not kind:
                continue
            namespace = m.group(2) or ''
            if not namespace and release and kind not in _CLUSTER_SCOPED:
                # Helm puts chart objects in the release namespace.
                namespace = release.obj.namespace
            found.append((0, m.start(), _Obj(kind, namespace, m.group(1))))
        for m in _RESOURCE_MAPPING_RE.finditer(text):
            found.append((0, m.start(), _Obj(m.group(3), m.group(2), m.group(1))))
    if ctx.release:
        found.append((1, ctx.release.start, ctx.release.obj))
    if '/' in text:
        for m in _ARTIFACT_URL_RE.finditer(text):
            found.append((2, m.start(), _Obj(_canonical_kind(m.group(1)), m.group(2), m.group(3))))
    if ctx.reporter is not None:
        found.append((3, 0, ctx.reporter))
    return found


def _dedupe(objects: Iterable[_Obj]) -> list[_Obj]:
    """Keep the first mention of each object, completed by any later mention with more detail."""
    result: list[_Obj] = []
    for obj in objects:
        for i, seen in enumerate(result):
            if seen.name != obj.name:
                continue
            if seen.kind and obj.kind and seen.kind.lower() != obj.kind.lower():
                continue
            if seen.namespace and obj.namespace and seen.namespace != obj.namespace:
                continue
            result[i] = _Obj(seen.kind or obj.kind, seen.namespace or obj.namespace, seen.name)
            break
        else:
            result.append(obj)
    return result


def _objects(ctx: _Ctx) -> list[_Obj]:
    found = sorted(_found_objects(ctx), key=lambda item: (item[0], item[1]))
    return _dedupe(obj for _, _, obj in found)


_PATH = r'[A-Za-z][\w-]{0,100}(?:\.[\w-]{1,100}|\[[^\]\s]{1,60}\]){0,30}'
_PATH_RE = re.compile(_PATH)
# apimachinery field errors: `<path>: Invalid value: ...`. Found by the error word, then the path
# is read backwards from it (see _path_before).
_FIELD_ERR_RE = re.compile(
    r': (Invalid value|Required value|Forbidden|Unsupported value|Duplicate value|Too long'
    r'|Too many|Not found)\b')
_VALIDATION_ERROR_RE = re.compile(
    r'ValidationError\([A-Za-z0-9]{1,100}((?:\.[\w-]{1,100}|\[\d{1,6}\]){0,30})\): '
    r'(missing required field|unknown field|invalid type for [\w.]{1,200})(?: "([\w-]{1,100})")?')
_MAY_NOT_CHANGE_RE = re.compile(rf'may not change these fields: ({_PATH})')
_UNKNOWN_FIELD_RE = re.compile(r'unknown field "([\w.\[\]-]{1,300})"')


_FIELD_ERR_WORDS = ('Invalid value', 'Required value', 'Forbidden', 'Unsupported value',
                    'Duplicate value', 'Too long', 'Too many', 'Not found')


_PATH_STOP = frozenset(' \t\n,:;("\'')


def _path_before(text: str, end: int) -> str | None:
    start = end
    while start > 0 and end - start < 400 and text[start - 1] not in _PATH_STOP:
        start -= 1
    candidate = text[start:end].lstrip('[.')
    return candidate if _PATH_RE.fullmatch(candidate) else None


_FieldHit = tuple[int, str, str]  # (position, field, what is wrong with it)


def _apimachinery_field(text: str) -> _FieldHit | None:
    if not any(word in text for word in _FIELD_ERR_WORDS):
        return None
    for m in _FIELD_ERR_RE.finditer(text):
        path = _path_before(text, m.start())
        if path:  # `<nil>: Invalid value` names no field; try the next error
            return m.start() - len(path), path, m.group(1)
    return None


def _kubectl_validation_field(text: str) -> _FieldHit | None:
    # kubectl client-side validation: ValidationError(ReplicaSet.spec): missing required field "x"
    m = _VALIDATION_ERROR_RE.search(text) if 'ValidationError(' in text else None
    if not m:
        return None
    path, leaf = m.group(1).lstrip('.'), m.group(3)
    return m.start(), f'{path}.{leaf}' if leaf and path else (leaf or path), m.group(2)


def _phrase_fields(text: str) -> list[_FieldHit]:
    hits: list[_FieldHit] = []
    end = text.find(': field not declared in schema')  # server-side apply: `.spec.x: field not ...`
    path = _path_before(text, end) if end > 0 else None
    if path:
        hits.append((end - len(path), path, 'not declared in the schema'))
    for needle, pattern, problem in (
            ('may not change these fields', _MAY_NOT_CHANGE_RE, 'may not be changed'),
            ('unknown field', _UNKNOWN_FIELD_RE, 'unknown field')):
        m = pattern.search(text) if needle in text else None
        if m:
            hits.append((m.start(), m.group(1), problem))
    return hits


def _field_match(text: str) -> tuple[str, str] | None:
    """(field, what is wrong with it) for the first field error in the message."""
    hits = [hit for hit in (_apimachinery_field(text), _kubectl_validation_field(text)) if hit]
    hits.extend(_phrase_fields(text))
    if not hits:
        return None
    _, name, problem = min(hits)
    return name, problem


_REF_RE = re.compile(r'(?:remote ref|reference|revision|tag|branch) ["\']([^"\'\s]{1,200})["\']')
_SEMVER_RE = re.compile(r'no match found for semver: ([^\s,]{1,100})')


def _ref_field(ctx: _Ctx) -> tuple[str | None, str | None]:
    """(the ref that was not found, the spec field that holds it)."""
    m = _REF_RE.search(ctx.text)
    if m:
        ref = m.group(1)
        if ref.startswith('refs/heads/'):
            return ref, 'spec.ref.branch'
        if ref.startswith('refs/tags/'):
            return ref, 'spec.ref.tag'
        return ref, 'spec.ref'
    m = _SEMVER_RE.search(ctx.text)
    if m:
        return m.group(1), 'spec.ref.semver'
    return None, 'spec.ref'


def _field(ctx: _Ctx, category: str) -> str | None:
    named = ctx.named_field
    if named and category in ('immutable-field', 'validation', 'helm-install', 'helm-upgrade',
                              'namespace', 'other'):
        return named[0]
    low = ctx.low
    if category == 'build' and 'path not found' in low:
        return 'spec.path'
    if category == 'namespace':
        return 'metadata.namespace'
    if category == 'dependency':
        return 'spec.dependsOn'
    if category == 'decryption':
        return 'spec.decryption'
    if category == 'substitution':
        return 'spec.postBuild'
    if category == 'ref-not-found':
        return _ref_field(ctx)[1]
    if category == 'helm-chart' and (('version' in low and 'matching' in low)
                                     or 'no chart version' in low):
        return 'spec.version' if ctx.kind == 'HelmChart' else 'spec.chart.spec.version'
    if category == 'auth' and 'secret' in low and ctx.kind in _FLUX_KINDS - {'Kustomization'}:
        return 'spec.secretRef'
    if category == 'source-not-ready' and 'layer' in low:
        return 'spec.layerSelector'
    return named[0] if named else None


# --------------------------------------------------------------------------------------------------
# Wording helpers

_URL_RE = re.compile(r'''((?:https?|ssh|oci|git|s3|gs)://[^\s'"<>]{1,500})''')
_HOST_RE = re.compile(r'://(?:[^@/\s]{1,200}@)?([^/:\s?#]{1,253})')
_WEBHOOK_RE = re.compile(r'admission webhook "([^"\s]{1,253})"')
_MISSING_KIND_RE = re.compile(
    r'no matches for kind "([A-Za-z0-9]{1,63})" in version "([^"\s]{1,200})"'
    r'|resource type "([A-Za-z0-9.]{1,100})"')
_K8S_PATH_RE = re.compile(r'/tmp/[\w.-]{1,200}?-?\d{3,20}/([^\s:\'"]{1,300})')


def _one_line(text: str, limit: int = 160) -> str:
    text = _SPACES_RE.sub(' ', text).strip()
    return text if len(text) <= limit else text[:limit - 1].rstrip() + '…'


def _cause(ctx: _Ctx) -> str:
    """The innermost error of the first line: Go wraps errors as `outer: inner: innermost`."""
    first, _, rest = ctx.text[:2000].partition('\n')
    if first.rstrip().endswith(':'):  # Helm lists the details on the following lines
        first = f'{first} {rest}'
    parts = [part.strip() for part in first.split(': ') if part.strip()]
    if not parts:
        return ''
    cause = parts[-1]
    if len(cause) < 24 and len(parts) > 1:  # `knownhosts: key mismatch` reads better whole
        cause = f'{parts[-2]}: {cause}'
    return _one_line(cause.rstrip('.]) '), 140)


def _url(ctx: _Ctx) -> str | None:
    if '://' not in ctx.text:
        return None
    m = _URL_RE.search(ctx.text)
    return m.group(1).rstrip('.,;)') if m else None


def _host(url: str | None) -> str | None:
    if not url:
        return None
    m = _HOST_RE.search(url)
    return m.group(1) if m else None


def _ns_flag(namespace: str) -> str:
    return f' -n {namespace}' if namespace else ''


def _flux_get(obj: _Obj) -> str:
    noun = _FLUX_NOUN.get(obj.kind)
    if noun:
        return f'flux get {noun} {obj.name}{_ns_flag(obj.namespace)}'
    return _kubectl(obj, 'describe')


def _flux_reconcile(obj: _Obj, extra: str = '') -> str:
    noun = _FLUX_NOUN.get(obj.kind, 'kustomization')
    return f'flux reconcile {noun} {obj.name}{_ns_flag(obj.namespace)}{extra}'


def _events(obj: _Obj) -> str:
    if obj.kind in _FLUX_KINDS:
        return f'flux events --for {obj.kind}/{obj.name}{_ns_flag(obj.namespace)}'
    return (f'kubectl{_ns_flag(obj.namespace)} get events '
            f'--field-selector involvedObject.name={obj.name}')


def _kubectl(obj: _Obj, verb: str, extra: str = '') -> str:
    kind = obj.kind.lower() if obj.kind else '<kind>'
    return f'kubectl{_ns_flag(obj.namespace)} {verb} {kind} {obj.name}{extra}'


def _jsonpath(spec_field: str) -> str:
    return f" -o jsonpath='{{.spec.{spec_field}}}'"


def _human(obj: _Obj) -> str:
    """`Deployment apps/podinfo` for sentences."""
    where = f'{obj.namespace}/{obj.name}' if obj.namespace else obj.name
    return f'{obj.kind} {where}' if obj.kind else f"'{where}'"


def _reporter(ctx: _Ctx, default_kind: str) -> _Obj:
    """The Flux object that reported the failure, with placeholders for what the message omits."""
    if ctx.reporter is not None:
        return ctx.reporter
    kind = ctx.kind if ctx.kind in _FLUX_KINDS else default_kind
    return _Obj(kind, '', f'<{kind.lower()}>')


def _first(objects: list[_Obj], kinds: Iterable[str] = (), *,
           exclude: Iterable[str] = ()) -> _Obj | None:
    wanted, unwanted = set(kinds), set(exclude)
    for obj in objects:
        if (not wanted or obj.kind in wanted) and obj.kind not in unwanted:
            return obj
    return None


_DOCS = 'https://fluxcd.io/flux/components/'
_KS_DOC = _DOCS + 'kustomize/kustomizations/'
_HR_DOC = _DOCS + 'helm/helmreleases/'
_SOURCE_DOCS = {
    'GitRepository': _DOCS + 'source/gitrepositories/',
    'OCIRepository': _DOCS + 'source/ocirepositories/',
    'HelmRepository': _DOCS + 'source/helmrepositories/',
    'HelmChart': _DOCS + 'source/helmcharts/',
    'Bucket': _DOCS + 'source/buckets/',
    'ExternalArtifact': _DOCS + 'source/externalartifacts/',
}


def _source_kind(ctx: _Ctx, objects: list[_Obj]) -> str:
    """Which source kind the message is about: the given kind, a named source, or URL clues."""
    if ctx.kind in _SOURCE_DOCS:
        return ctx.kind
    named = _first(objects, _SOURCE_DOCS)
    if named:
        return named.kind
    low = ctx.low
    if 'bucket' in low:
        return 'Bucket'
    if 'oci://' in low or 'manifests' in low or 'registry' in low or 'artifact digest' in low:
        return 'OCIRepository'
    if 'index.yaml' in low or 'repository index' in low:
        return 'HelmRepository'
    if 'chart' in low:
        return 'HelmChart'
    return 'GitRepository'


def _source_obj(ctx: _Ctx, objects: list[_Obj]) -> _Obj:
    kind = _source_kind(ctx, objects)
    named = _first(objects, (kind,))
    if named:
        return named
    if ctx.reporter is not None and ctx.reporter.kind == kind:
        return ctx.reporter
    return _Obj(kind, '', f'<{kind.lower()}>')


# --------------------------------------------------------------------------------------------------
# Advice per category. Each returns (summary, suggestions, docs).

_Advice = tuple[str, list[str], list[str]]


def _immutable(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    target = _first(objects, exclude=('HelmRelease',) if ctx.release else ()) or _first(objects)
    target = target or _Obj('', '', '<object>')
    webhook = _WEBHOOK_RE.search(ctx.text)
    what = f'{field} is' if field else 'a field that changed is'
    summary = f'{_human(target)} cannot be updated in place: {what} immutable'
    if webhook:
        summary += f' (enforced by admission webhook {webhook.group(1)})'
    tips: list[str] = []
    if ctx.release and target.kind != 'HelmRelease':
        hr = ctx.release.obj
        tips.append(f'Delete the object so Helm can create it again: {_kubectl(target, "delete")}, '
                    f'then {_flux_reconcile(hr, " --force")}')
        tips.append(f'Or set spec.upgrade.force: true on {_human(hr)} for one upgrade '
                    '(Helm then replaces objects it cannot patch), and remove it afterwards.')
        return summary, tips, [_HR_DOC + '#upgrade-configuration', _HR_DOC + '#forcing-a-release']
    ks = _reporter(ctx, 'Kustomization')
    if webhook:
        tips.append(f'The webhook {webhook.group(1)} rejects the change itself, so spec.force '
                    'and the kustomize.toolkit.fluxcd.io/force annotation do not help: delete the '
                    'object (or give it a new name) and let Flux create it again: '
                    f'{_kubectl(target, "delete")} && {_flux_reconcile(ks)}')
    else:
        tips.append('Let Flux recreate only this object: add the annotation '
                    f'kustomize.toolkit.fluxcd.io/force: enabled to {_human(target)} in Git, or '
                    f'set spec.force: true on Kustomization {ks.name} (recreates every object '
                    'whose immutable fields change).')
        cascade = ' --cascade=orphan' if target.kind == 'StatefulSet' else ''
        tips.append(f'Or recreate it by hand: {_kubectl(target, "delete", cascade)} && '
                    f'{_flux_reconcile(ks, " --with-source")}'
                    + (' (--cascade=orphan keeps the pods running)' if cascade else ''))
    tips.append(f'See what changed against the cluster: flux diff kustomization {ks.name}'
                f'{_ns_flag(ks.namespace)} --path <local path of spec.path>')
    return summary, tips, [_KS_DOC + '#force']


_VALIDATION_KIND_RE = re.compile(r'ValidationError\(([A-Za-z0-9]{1,100})[.)]')


def _validation(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    target = _first(objects)
    if target is None:
        m = _VALIDATION_KIND_RE.search(ctx.text)
        target = _Obj(m.group(1) if m else '', '', '<name>' if m else '<object>')
    named = ctx.named_field
    problem = f'{named[0]}: {named[1]}' if named else _cause(ctx)
    webhook = _WEBHOOK_RE.search(ctx.text)
    if webhook:
        summary = (f'{_human(target)} was rejected by admission webhook {webhook.group(1)}: '
                   f'{_cause(ctx)}')
    else:
        summary = f'the API server rejected {_human(target)}: {problem}'
    tips = []
    if field and not field.startswith('status.'):
        tips.append(f'Fix {field} of {_human(target)} in Git; the whole Kustomization is not '
                    'applied until every object passes the dry-run.')
        if target.kind:
            tips.append(f'Check what the installed API accepts: kubectl explain '
                        f'{target.kind.lower()}.{field.split("[", 1)[0]}')
    if 'not declared in schema' in ctx.low or 'unknown field' in ctx.low:
        tips.append('If the field belongs to a newer API version, upgrade the CRD of '
                    f'{target.kind or "the kind"} first, or use the field of the installed '
                    'version.')
    if 'storedversions' in ctx.low:
        tips.append('The Git copy of this CRD is older than the one installed: update the '
                    'manifests in Git (e.g. re-run flux install --export / bootstrap) instead of '
                    'downgrading.')
    if webhook:
        tips.append(f'Read the policy of webhook {webhook.group(1)}: kubectl get '
                    'validatingwebhookconfigurations -o wide')
    ks = _reporter(ctx, 'Kustomization')
    tips.append(f'Reproduce locally: flux build kustomization {ks.name}{_ns_flag(ks.namespace)} '
                '--path <local path> | kubectl apply --server-side --dry-run=server -f -')
    docs = [_KS_DOC]
    if target.kind == 'HelmRelease' or ctx.kind == 'HelmRelease':
        docs.append(_HR_DOC)
    return summary, tips, docs


def _build(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    ks = _reporter(ctx, 'Kustomization')
    m = _K8S_PATH_RE.search(ctx.text)
    path = f'./{m.group(1)}' if m else '<path>'
    if 'path not found' in ctx.low:
        summary = f'spec.path {path} does not exist in the source artifact'
        tips = [f'Check that {path} exists at the fetched revision (git ls-tree HEAD {path}) '
                f'and fix spec.path of Kustomization {ks.name}.',
                'If the app was removed on purpose, delete this Kustomization as well (prune on '
                'its parent does that when it is defined in Git).',
                _flux_get(ks)]
        return summary, tips, [_KS_DOC + '#path']
    summary = f'kustomize build failed: {_cause(ctx)}'
    tips = [f'Run the same build locally: kustomize build {path}  (or flux build kustomization '
            f'{ks.name}{_ns_flag(ks.namespace)} --path {path})']
    if 'unknown field' in ctx.low:
        tips.append('A kustomization.yaml has a key Kustomize does not know; move it under the '
                    'right generator or transformer.')
    if 'git fetch' in ctx.low or '?ref=' in ctx.low or 'https://' in ctx.low:
        tips.append('A remote base could not be fetched in-cluster: vendor it into the repository, '
                    'or make sure kustomize-controller can reach that host.')
    tips.append(_events(ks))
    return summary, tips, [_KS_DOC + '#path']


def _health_check(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    statuses = dict(_STATUS_RE.findall(ctx.text))
    workloads = [obj for obj in objects if obj.kind and obj != ctx.reporter][:3]
    ks = _reporter(ctx, 'Kustomization')
    if 'cancel' in ctx.low:
        summary = 'health checks were canceled because a newer revision started reconciling'
    elif workloads:
        listed = ', '.join(_human(obj) + (f' ({statuses[obj.ref]})' if obj.ref in statuses else '')
                           for obj in workloads)
        summary = f'health check failed: {listed} did not become ready in time'
    else:
        summary = f'health check failed: {_cause(ctx)}'
    tips = []
    for obj in workloads:
        if obj.kind in ('Deployment', 'StatefulSet', 'DaemonSet'):
            tips.append(f'kubectl{_ns_flag(obj.namespace)} rollout status '
                        f'{obj.kind.lower()}/{obj.name}')
            tips.append(_kubectl(obj, 'describe'))
        elif obj.kind in _FLUX_KINDS:
            tips.append(_flux_get(obj))
            tips.append(_events(obj))
        else:
            tips.append(_kubectl(obj, 'describe'))
    if workloads and workloads[0].namespace:
        tips.append(f'kubectl -n {workloads[0].namespace} get pods,events  (image pulls, crash '
                    'loops, Pending pods)')
    tips.append(f'If the workload is only slow, raise spec.timeout of {ks.kind} {ks.name}; '
                'otherwise fix the workload and push again.')
    return summary, tips, [_KS_DOC + '#health-checks', _KS_DOC + '#timeout']


def _dependency(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    dep = _first([o for o in objects if o != ctx.reporter], ('Kustomization', 'HelmRelease'))
    doc = _HR_DOC if (dep and dep.kind == 'HelmRelease') or ctx.kind == 'HelmRelease' else _KS_DOC
    if dep is None:
        me = ctx.reporter
        summary = 'waiting for a dependency in spec.dependsOn that is not ready'
        tips = ['flux get kustomizations -A --status-selector ready=false  (find the dependsOn '
                'entry that is not Ready and fix it first)']
        if me is not None:
            tips.insert(0, f'{_kubectl(me, "get", _jsonpath("dependsOn"))}  (which '
                           'dependencies this one waits for)')
        return summary, tips, [doc + '#dependencies']
    if 'not found' in ctx.low or 'does not exist' in ctx.low:
        state = 'does not exist'
    elif 'up to date' in ctx.low:
        state = 'has not applied the latest revision yet'
    else:
        state = 'is not ready'
    summary = f'blocked by dependency {_human(dep)}, which {state}'
    tips = [f'See why: {_flux_get(dep)}', f'{_events(dep)}']
    if state == 'does not exist':
        tips.append('Check the name and namespace in spec.dependsOn, or create that object.')
    tips.append('This object retries on its own (every 30s by default) once the dependency is '
                'Ready; fix the dependency first.')
    return summary, tips, [doc + '#dependencies']


_PRERELEASE_API_RE = re.compile(r'v\d{1,3}(?:alpha|beta)\d')


def _missing_crd(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    m = _MISSING_KIND_RE.search(ctx.text)
    kind = (m.group(1) or m.group(3)) if m else None
    version = m.group(2) if m else None
    group = version.rpartition('/')[0] if version and '/' in version else None
    what = f'{kind} ({version})' if kind and version else (kind or 'this kind')
    summary = (f'the cluster has no {what}: its CRD is not installed (yet), or that API version '
               'is gone')
    target = _first(objects, exclude=('HelmRelease',))
    if target:
        summary = f'{_human(target)}: ' + summary
    tips = []
    if group:
        tips.append(f'See what the cluster serves: kubectl api-resources --api-group={group}')
    elif kind:
        tips.append(f'See what the cluster serves: kubectl api-resources | grep -i {kind}')
    if 'release manifest' in ctx.low:
        tips.append('The stored Helm release still references a removed API version: rewrite it '
                    'with the helm mapkubeapis plugin, then let Flux retry.')
    if ctx.kind == 'HelmRelease' or ctx.release:
        tips.append('If the chart ships the CRDs, check spec.install.crds / spec.upgrade.crds '
                    '(CreateReplace) on the HelmRelease.')
    ks = _reporter(ctx, 'Kustomization')
    tips.append(f'If another Kustomization installs the CRD, add it to spec.dependsOn of {ks.kind} '
                f'{ks.name} and give that one wait: true (or healthChecks) so the CRD is '
                'established before this applies.')
    if version and _PRERELEASE_API_RE.search(version):
        tips.append(f'{version} may be retired: check the versions the installed CRD serves and '
                    'update apiVersion in Git.')
    return summary, tips, [_KS_DOC + '#dependencies',
                           _HR_DOC + '#controlling-the-lifecycle-of-custom-resource-definitions']


_MISSING_NS_RE = re.compile(r'namespaces "([^"\s]{1,63})" not found|namespace (\S{1,63}) is being')


def _namespace(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    target = _first(objects, exclude=('Namespace',)) or _Obj('', '', '<object>')
    ks = _reporter(ctx, 'Kustomization')
    m = _MISSING_NS_RE.search(ctx.text)
    missing = (m.group(1) or m.group(2)) if m else None
    if 'namespace not specified' in ctx.low:
        summary = f'{_human(target)} has no metadata.namespace, and its kind is namespaced'
        tips = [f'Set metadata.namespace on {_human(target)} in Git, or spec.targetNamespace on '
                f'Kustomization {ks.name} so every object gets one.',
                f'Check the rendered output: flux build kustomization {ks.name}'
                f'{_ns_flag(ks.namespace)} --path <local path>']
    elif 'terminat' in ctx.low:
        summary = f'namespace {missing or "<namespace>"} is being deleted: nothing can be created'
        tips = [f'kubectl get namespace {missing or "<namespace>"} -o yaml  (look for finalizers '
                'that block the deletion)']
    else:
        namespace = missing or '<namespace>'
        summary = f'{_human(target)} goes to namespace {namespace}, which does not exist'
        tips = [f'Add the Namespace {namespace} to the manifests (Flux applies namespaces first), '
                'or add dependsOn on the Kustomization that creates it.',
                f'kubectl get namespace {missing or "<namespace>"}']
    return summary, tips, [_KS_DOC + '#target-namespace']


def _prune(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    ks = _reporter(ctx, 'Kustomization')
    summary = f'pruning (garbage collection) of removed objects failed: {_cause(ctx)}'
    tips = [_events(ks)]
    target = _first([o for o in objects if o != ctx.reporter])
    if target:
        tips.append(f'{_kubectl(target, "get", " -o yaml")}  (finalizers or webhooks can block the '
                    'delete)')
    tips.append('If a CRD was removed before its custom resources, delete those resources first '
                '(or restore the CRD until pruning finishes); keep CRDs and their resources in '
                'separate Kustomizations with dependsOn.')
    return summary, tips, [_KS_DOC + '#prune']


def _decryption(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    target = _first(objects, exclude=(ctx.reporter.kind,) if ctx.reporter else ())
    target = target or _Obj('', '', '<file>')
    ks = _reporter(ctx, 'Kustomization')
    low = ctx.low
    if 'metadata not found' in low:
        why = 'it is not SOPS-encrypted (no sops metadata)'
        fix = (f'Encrypt the file of {_human(target)} with sops (sops --encrypt --in-place FILE), '
               'or keep plain files out of the paths this Kustomization decrypts.')
    elif 'configuring decryption is required' in low or 'is sops encrypted' in low:
        why = 'it is SOPS-encrypted but the Kustomization has no spec.decryption'
        fix = (f'Set spec.decryption (provider: sops, secretRef) on Kustomization {ks.name}.')
    else:
        why = 'no key in the decryption Secret can decrypt it'
        fix = ('Compare the recipients in the file\'s sops metadata with the private key in the '
               'Secret named by spec.decryption.secretRef; re-encrypt for the right key with sops '
               'updatekeys FILE.')
    summary = f'SOPS decryption of {_human(target)} failed: {why}'
    tips = [fix, f'{_kubectl(ks, "get", _jsonpath("decryption"))}  (which Secret holds '
                 'the keys)']
    return summary, tips, [_KS_DOC + '#decryption']


def _substitution(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    target = _first(objects, exclude=(ctx.reporter.kind,) if ctx.reporter else ())
    target = target or _Obj('', '', '<object>')
    ks = _reporter(ctx, 'Kustomization')
    summary = f'postBuild variable substitution failed in {_human(target)}: {_cause(ctx)}'
    tips = ['Variable names may contain only letters, digits and underscores (${MY_VAR}); write '
            'a literal ${...} as $${...}.',
            f'See the variables Flux resolved: flux debug kustomization {ks.name}'
            f'{_ns_flag(ks.namespace)} --show-vars']
    if 'not found' in ctx.low:
        tips.append('A ConfigMap/Secret in spec.postBuild.substituteFrom is missing: create it, or '
                    'mark it optional: true.')
    return summary, tips, [_KS_DOC + '#post-build-variable-substitution']


def _source_not_ready(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    source = _source_obj(ctx, objects)
    low = ctx.low
    if 'layer' in low:
        summary = f'{_human(source)} could not unpack its artifact: {_cause(ctx)}'
        tips = ['The layer is not the gzip tarball Flux expects: check spec.layerSelector '
                '(mediaType, operation: extract|copy) against the artifact (flux pull artifact / '
                'crane manifest).', _flux_get(source)]
        return summary, tips, [_SOURCE_DOCS.get(source.kind, _DOCS) + '#layer-selector']
    if 'download artifact' in low and ('connection refused' in low or 'dial tcp' in low
                                       or 'no such host' in low):
        summary = (f'could not download the artifact of {_human(source)}: source-controller is '
                   'unreachable')
        tips = ['kubectl -n flux-system get pods -l app=source-controller  (restarts, OOM, '
                'readiness)',
                'kubectl -n flux-system logs deploy/source-controller',
                'Check NetworkPolicies in flux-system allow kustomize/helm-controller to reach '
                'source-controller.']
    elif "' not found" in low or 'unable to get source' in low:
        summary = f'{_human(source)} does not exist (or cannot be read): {_cause(ctx)}'
        tips = ['Check spec.sourceRef (kind, name, namespace) of the object that uses it, and '
                'that the source is in Git: flux get sources all -A']
    elif '404' in low or 'not found' in low:
        summary = f'the artifact of {_human(source)} is missing on source-controller'
        summary += ' (404 Not Found)' if '404' in low else ''
        tips = [f'Fetch it again: {_flux_reconcile(source)}  (source-controller storage is lost '
                'when its pod restarts without a persistent volume)']
    else:
        cause = _cause(ctx)
        summary = f'{_human(source)} is not ready'
        if cause and 'not ready' not in cause.lower():
            summary += f': {cause}'
        tips = [f'See why: {_flux_get(source)}', _events(source)]
    consumer = ctx.reporter
    if consumer is not None and consumer.kind in ('Kustomization', 'HelmRelease'):
        tips.append(f'Then: {_flux_reconcile(consumer, " --with-source")}')
    return summary, tips, [_SOURCE_DOCS.get(source.kind, _DOCS + 'source/')]


_CLOUD_AUTH_RE = re.compile(r'\barn\b|security token|accessdenied|access denied|credential')


def _auth(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    source = _source_obj(ctx, objects)
    url = _url(ctx)
    host = _host(url)
    secret = _first(objects, ('Secret',))
    low = ctx.low
    doc = _SOURCE_DOCS.get(source.kind, _DOCS + 'source/')
    where = f' by {host}' if host else ''
    tips: list[str] = []
    if secret and 'not found' in low:
        summary = f'the credentials {_human(secret)} does not exist'
        tips.append(f'Create it: {_create_secret_cmd(source, secret, url)}')
    elif 'knownhosts' in low or 'host key' in low or 'error: certificate' in low:
        summary = f'the SSH host key of {host or "the Git server"} does not match known_hosts'
        tips.append(f'Refresh known_hosts in the Git secret: ssh-keyscan {host or "<host>"}, or '
                    f'recreate it: {_create_secret_cmd(source, secret, url)}')
    elif _CLOUD_AUTH_RE.search(low) and source.kind in ('Bucket', 'OCIRepository'):
        summary = f'{_human(source)} was denied access{where}: {_cause(ctx)}'
        tips.append(f'Check the credentials in spec.secretRef of {_human(source)} and that the '
                    'storage policy allows listing and reading it (and spec.endpoint/provider).')
        tips.append('With a cloud provider (spec.provider aws/azure/gcp), check the workload '
                    'identity of source-controller: kubectl -n flux-system get serviceaccount '
                    'source-controller -o yaml (e.g. eks.amazonaws.com/role-arn).')
    elif 'is forbidden: user' in low:
        summary = f'the controller is not allowed to do this (Kubernetes RBAC): {_cause(ctx)}'
        tips.append('Grant the ServiceAccount in spec.serviceAccountName (or the controller\'s) '
                    'the missing permission; check with kubectl auth can-i <verb> <resource> '
                    '--as=system:serviceaccount:<ns>:<name>')
        return summary, tips, [_KS_DOC + '#role-based-access-control']
    elif "can't access" in low or 'cross-namespace' in low:
        summary = f'cross-namespace reference blocked: {_cause(ctx)}'
        tips.append('The controllers run with --no-cross-namespace-refs: move the source into the '
                    'same namespace as the object that uses it.')
        return summary, tips, [_KS_DOC + '#cross-namespace-references']
    else:
        summary = f'{_human(source)}: credentials were rejected{where} ({_cause(ctx)})'
    if secret and not tips:
        tips.append(f'kubectl{_ns_flag(secret.namespace)} get secret {secret.name} -o yaml  '
                    '(check the keys and that the token has not expired)')
    if url and not tips and source.kind == 'GitRepository':
        tips.append(f'Try the same credentials outside the cluster: git ls-remote {url}; then '
                    f'update the Secret: {_create_secret_cmd(source, secret, url)}')
    if not secret and len(tips) < 2:
        tips.append(f'Check the Secret in spec.secretRef of {_human(source)}: '
                    f'{_kubectl(source, "get", _jsonpath("secretRef"))}; make sure the '
                    'token is valid and has read access.')
    tips.append(f'Then: {_flux_reconcile(source)}')
    return summary, tips, [doc + '#secret-reference']


def _create_secret_cmd(source: _Obj, secret: _Obj | None, url: str | None) -> str:
    name = secret.name if secret else '<secret>'
    namespace = (secret.namespace if secret else '') or source.namespace
    if source.kind == 'OCIRepository':
        return (f'flux create secret oci {name}{_ns_flag(namespace)} --url={url or "<registry>"} '
                '--username=<user> --password=<token>')
    if source.kind == 'HelmRepository' or source.kind == 'HelmChart':
        return (f'flux create secret helm {name}{_ns_flag(namespace)} --username=<user> '
                '--password=<token>')
    return f'flux create secret git {name}{_ns_flag(namespace)} --url={url or "<repository url>"}'


def _network(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    source = _source_obj(ctx, objects)
    host = _host(_url(ctx))
    low = ctx.low
    summary = f'network error reaching {host or "the remote"}: {_cause(ctx)}'
    tips = []
    if 'x509' in low or 'certificate' in low or 'tls' in low:
        tips.append('TLS verification failed: if a proxy or private CA is in the path, give the '
                    'source its CA (spec.certSecretRef with ca.crt) or fix the certificate the '
                    'proxy presents.')
    if host:
        tips.append(f'Test from inside the cluster: kubectl -n flux-system run nettest --rm -it '
                    f'--restart=Never --image=busybox -- nslookup {host}')
    if ':22' in low or 'ssh' in low:
        tips.append('If outbound SSH (port 22) is blocked, switch the source to HTTPS with a '
                    'token.')
    tips.append(f'Then: {_flux_reconcile(source)}')
    return summary, tips, [_SOURCE_DOCS.get(source.kind, _DOCS + 'source/')]


def _ref_not_found(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    source = _source_obj(ctx, objects)
    url = _url(ctx)
    ref, _ = _ref_field(ctx)
    low = ctx.low
    if 'object not found' in low:
        summary = (f'the commit {_human(source)} points at is not in {url or "the repository"} '
                   '(history rewritten by a force push?)')
    elif 'empty' in low:
        summary = f'{url or "the repository"} has no commits'
    elif ref and field == 'spec.ref.semver':
        summary = f'no tag of {url or _human(source)} matches semver {ref}'
    elif ref:
        summary = f'{ref} was not found in {url or _human(source)}'
    else:
        summary = f'{_human(source)}: reference not found ({_cause(ctx)})'
    tips = []
    if url and source.kind == 'GitRepository':
        tips.append(f'List what exists: git ls-remote {url}' + (f' {ref}' if ref else ''))
    tips.append(f'Fix {field or "spec.ref"} of {_human(source)} in Git (branch, tag, semver or '
                'digest that exists).')
    tips.append(f'Then: {_flux_reconcile(source)}')
    doc = _SOURCE_DOCS.get(source.kind, _DOCS + 'source/')
    return summary, tips, [doc + '#reference']


_ANOTHER_OP = 'another operation (install/upgrade/rollback) is in progress'


def _helm(ctx: _Ctx, objects: list[_Obj], action: str) -> _Advice:
    hr = ctx.release.obj if ctx.release else _reporter(ctx, 'HelmRelease')
    chart = f' (chart {ctx.release.chart})' if ctx.release and ctx.release.chart else ''
    cause = _cause(ctx)
    summary = f'Helm {action} of {_human(hr)}{chart} failed: {cause}'
    low = ctx.low
    ns = _ns_flag(hr.namespace)
    tips = [f'{_flux_get(hr)}', f'{_events(hr)}']
    if _ANOTHER_OP in low:
        tips.insert(0, f'The release is locked in a pending-{action} state by an interrupted run: '
                       f'helm{ns} history {hr.name}; newer Flux unlocks it on the next reconcile, '
                       f'otherwise roll back (helm{ns} rollback {hr.name}) and '
                       f'{_flux_reconcile(hr, " --reset")}')
    elif 'no deployed releases' in low:
        tips.insert(0, f'The first install never succeeded: helm{ns} uninstall {hr.name}, then '
                       f'{_flux_reconcile(hr, " --reset")}')
    elif 'deadline exceeded' in low or 'timed out' in low:
        tips.insert(0, f'Helm waited spec.timeout for the release\'s resources: kubectl{ns} get '
                       'pods,events  (image pulls, Pending pods, failing probes); raise '
                       'spec.timeout only if it is just slow.')
    elif 'exists and cannot be imported' in low:
        tips.insert(0, 'An object of this chart already exists outside the release: delete it or '
                       'add the meta.helm.sh/release-name/-namespace annotations and '
                       'app.kubernetes.io/managed-by: Helm label so Helm adopts it.')
    elif any(word in low for word in ('validat', 'schema', 'parse error', 'template', 'yaml')):
        tips.insert(0, f'Render it with the same values to see the error: flux debug helmrelease '
                       f'{hr.name}{ns} --show-values > values.yaml; helm template {hr.name} '
                       '<chart> -f values.yaml --debug')
    if action == 'test':
        tips.insert(0, f'helm{ns} test {hr.name} --logs  (or disable with spec.test.enable: false, '
                       'or spec.test.ignoreFailures: true)')
        return summary, tips, [_HR_DOC + '#test-configuration']
    tips.append(f'A failed {action} stalls the release when remediation retries are used up: '
                f'once fixed, {_flux_reconcile(hr, " --reset")} (annotation '
                'reconcile.fluxcd.io/resetAt).')
    return summary, tips, [_HR_DOC + f'#{action}-configuration',
                           _HR_DOC + '#configuring-failure-handling']


def _helm_install(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    return _helm(ctx, objects, 'install')


def _helm_upgrade(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    return _helm(ctx, objects, 'upgrade')


def _helm_test(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    return _helm(ctx, objects, 'test')


_VERSION_RE = re.compile(
    r'version (?:string|constraint) ["\']?([^\s"\']{1,100})'
    r'|no chart version found for ([^\s"\']{1,200})')
_TEMPLATE_RE = re.compile(r'(?:parse error on|template:) ([\w.-]{1,200}/templates/[\w./-]{1,300})')


def _helm_chart(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    chart = _first(objects, ('HelmChart',))
    hr = _first(objects, ('HelmRelease',)) or (ctx.reporter if ctx.reporter
                                              and ctx.reporter.kind == 'HelmRelease' else None)
    low = ctx.low
    template = _TEMPLATE_RE.search(ctx.text)
    version = _VERSION_RE.search(ctx.text) if 'version' in low else None
    tips = []
    if version and ('matching' in low or 'no chart version' in low):
        summary = f'no published chart version matches {version.group(1) or version.group(2)}'
        tips.append('List the published versions: helm search repo <repo>/<chart> --versions '
                    '--devel, then fix ' + (field or 'spec.chart.spec.version') + '.')
    elif template:
        summary = f'chart template {template.group(1)} does not render: {_cause(ctx)}'
        name = hr.name if hr else '<helmrelease>'
        tips.append(f'Render it with the same values: flux debug helmrelease {name}'
                    f'{_ns_flag(hr.namespace if hr else "")} --show-values > values.yaml; '
                    f'helm template {name} <chart> -f values.yaml --debug')
    else:
        summary = f'the Helm chart could not be fetched or loaded: {_cause(ctx)}'
    if chart:
        tips.append(_flux_get(chart))
    else:
        tips.append('flux get sources chart -A  (the HelmChart is named <hr-namespace>-<hr-name>)')
    return summary, tips, [_SOURCE_DOCS['HelmChart'], _HR_DOC + '#chart-template']


def _retries_exhausted(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    hr = _first(objects, ('HelmRelease',)) or _reporter(ctx, 'HelmRelease')
    summary = f'{_human(hr)} stopped retrying after repeated failures and is stalled'
    ns = _ns_flag(hr.namespace)
    tips = [f'Find the first failure: kubectl{ns} get helmrelease {hr.name} -o yaml  (the Released '
            f'condition and status.history), or {_events(hr)}',
            f'After fixing it, start over: {_flux_reconcile(hr, " --reset")}  (Flux >= 2.2; sets '
            'reconcile.fluxcd.io/resetAt); on older Flux: flux suspend helmrelease '
            f'{hr.name}{ns} && flux resume helmrelease {hr.name}{ns}',
            'Give future failures more room: spec.install.remediation.retries / '
            'spec.upgrade.remediation.retries.']
    return summary, tips, [_HR_DOC + '#resetting-remediation-retries',
                           _HR_DOC + '#configuring-failure-handling']


def _timeout(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    low = ctx.low
    host = _host(_url(ctx))
    if 'rate limiter' in low or ('waiting for the condition' in low and not host):
        subject = _reporter(ctx, ctx.kind if ctx.kind in _FLUX_KINDS else 'Kustomization')
        summary = ('the client gave up waiting (context deadline exceeded); the reconciliation '
                   'may still be running or failing')
        tips = [f'Read the real state: {_flux_get(subject)}', _events(subject),
                'Give the CLI more time with --timeout (default 5m).']
        return summary, tips, [_KS_DOC + '#timeout']
    source = _source_obj(ctx, objects)
    summary = f'timed out talking to {host or "the remote"}: {_cause(ctx)}'
    tips = []
    if host:
        tips.append(f'Check egress, DNS and proxy (HTTPS_PROXY/NO_PROXY) to {host} from '
                    'source-controller: kubectl -n flux-system logs deploy/source-controller')
    tips.append(f'If the remote is just slow, raise spec.timeout of {_human(source)}.')
    tips.append(f'Then: {_flux_reconcile(source)}')
    return summary, tips, [_SOURCE_DOCS.get(source.kind, _DOCS + 'source/') + '#timeout']


def _other(ctx: _Ctx, objects: list[_Obj], field: str | None) -> _Advice:
    low = ctx.low
    subject = ctx.reporter or _first(objects, _FLUX_KINDS)
    if subject is None and ctx.kind in _FLUX_KINDS:
        subject = _reporter(ctx, ctx.kind)
    summary = _one_line(ctx.text.split('\n', 1)[0]) or 'unrecognised failure'
    tips = []
    if 'signature' in low and 'verif' in low:
        summary = f'commit/tag signature verification failed: {_cause(ctx)}'
        tips.append('Check spec.verify: the public keys in its Secret must match the signer, and '
                    'mode (HEAD, Tag, TagAndHEAD) must match what is signed.')
    elif 'retry after' in low:
        summary = 'the release will be retried later; this message hides the actual error'
        hr = subject or _reporter(ctx, 'HelmRelease')
        tips.append('Read the Released/Remediated conditions for the real error: '
                    f'{_kubectl(hr, "get", " -o yaml")}')
    if subject is not None:
        tips.append(_flux_get(subject))
        tips.append(_events(subject))
    else:
        tips.append('flux get all -A --status-selector ready=false')
        tips.append('flux logs --level=error --all-namespaces')
    kind = subject.kind if subject else ctx.kind
    docs = [_KS_DOC if kind == 'Kustomization' else _HR_DOC if kind == 'HelmRelease'
            else _SOURCE_DOCS.get(kind or '', _DOCS)]
    if 'signature' in low:
        docs = [_SOURCE_DOCS['GitRepository'] + '#verification']
    return summary, tips, docs


_ADVICE: dict[str, Callable[[_Ctx, list[_Obj], str | None], _Advice]] = {
    'immutable-field': _immutable, 'validation': _validation, 'build': _build,
    'health-check': _health_check, 'dependency': _dependency, 'missing-crd': _missing_crd,
    'namespace': _namespace, 'prune': _prune, 'decryption': _decryption,
    'substitution': _substitution, 'source-not-ready': _source_not_ready, 'auth': _auth,
    'network': _network, 'ref-not-found': _ref_not_found, 'helm-install': _helm_install,
    'helm-upgrade': _helm_upgrade, 'helm-test': _helm_test, 'helm-chart': _helm_chart,
    'retries-exhausted': _retries_exhausted, 'timeout': _timeout, 'other': _other,
}


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for item in items if item))


def explain(message: str, kind: str | None = None, reason: str | None = None, *,
            namespace: str | None = None, name: str | None = None) -> Diagnosis:
    """Diagnose one Flux failure message; `kind`/`reason` (and `namespace`/`name`) are the reporting
    object's, if known: they let the suggestions name it instead of a placeholder."""
    ctx = _normalize(message, kind, reason, (namespace or '', name) if name else None)
    category = _classify(ctx)
    objects = _objects(ctx)
    field = _field(ctx, category)
    summary, suggestions, docs = _ADVICE[category](ctx, objects, field)
    return Diagnosis(
        category=category,
        objects=tuple(obj.ref for obj in objects),
        field=field,
        summary=_one_line(summary, 240),
        suggestions=_unique(suggestions),
        docs=_unique(docs),
    )
