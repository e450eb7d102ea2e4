"""Which Flux resources a change affects: changed files mapped to the Kustomizations that build them.

A Kustomization builds the files that `kustomize build` reads at its spec.path in the source: the kustomization
file there and everything it references (resources, bases, components, patches, generator files...), transitively,
or, where there is no kustomization file, what Flux's generated one takes (every YAML file below, and each
sub-directory with its own kustomization file as a whole). A change affects it when a changed file is among them in
the tree after the change or, for deletions, before it. Files are read from git objects (gitctx.TreeReader), never
from the work tree, so the answer is about the commits compared.

ExternalArtifacts are followed through their ArtifactGenerator's copy rules to the artifact path each repository
file lands at; a HelmRelease is affected when its chart comes from the changed files or the Kustomization that
applies it is affected. Everything except `followed_sources`, `default_base` and `affected_scope` is pure over the
trees it is given.

Where the answer cannot be exact it errs towards "affected", so that waiting on the affected resources never skips
one that changes: .sourceignore and spec.ignore are not applied; a directory resource without a kustomization file
(which kustomize refuses) counts whole; a source that cannot be traced file by file (an OCIRepository, an
ExternalArtifact without its generator, a tarball unpacked by an Extract copy rule) counts as affected, as does every
HelmRelease an affected Kustomization applies. The one way it can miss: a Kustomization counts as affected through the
one applying it when a changed file holds its manifest (by kind and name), not when only a JSON 6902 or inline patch
in a kustomization file changes it.
"""
from __future__ import annotations

import bisect
import contextlib
import functools
import posixpath
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flux_monitor_hook import gitctx
from flux_monitor_hook import objects
from flux_monitor_hook.errors import UserError
from flux_monitor_hook.objects import Obj
from flux_monitor_hook.objects import ObjectKey
from flux_monitor_hook.tracker import Target
from flux_monitor_hook.tracker import Tracker

SourceRef = tuple[str, str, str]  # (kind, namespace, name)
Chain = tuple[str, ...]  # a changed file first, then what includes it, up to the resource

# In kustomize's order of preference (it refuses a directory with more than one).
KUSTOMIZATION_FILES = ('kustomization.yaml', 'kustomization.yml', 'Kustomization')
_ARTIFACT = '@artifact/'
_GLOB_CHARS = re.compile(r'[*?\[\]]')
_LOADER: Any = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)  # libyaml when present: kustomizations add up


@dataclass(frozen=True)
class Affected:
    """Whether a change affects one Kustomization or HelmRelease, and why: a changed file first, then what
    includes it, up to the resource itself."""

    key: ObjectKey
    affected: bool
    why: Chain = ()

    @property
    def because(self) -> str:
        return ' ← '.join(self.why)


@dataclass(frozen=True)
class Scope:
    """What `wait --scope affected` follows. A resource that was not assessed, e.g. one the change itself creates,
    counts as affected, and so do sources: only what was assessed as unaffected is left out."""

    assessed: frozenset[ObjectKey]
    affected: frozenset[ObjectKey]

    def __call__(self, key: ObjectKey) -> bool:
        return key in self.affected or key not in self.assessed


# -- paths ------------------------------------------------------------------------------------------------

def _join(directory: str, ref: object) -> str | None:
    """`ref` relative to `directory`, normalised ('' is the root); None for remote URLs, absolute paths and
    paths that leave the repository."""
    if not isinstance(ref, str) or not ref.strip() or '://' in ref or ref.startswith(('/', 'git@')):
        return None
    joined = posixpath.normpath(posixpath.join(directory, ref.strip()))
    if joined == '.':
        return ''
    if joined == '..' or joined.startswith('../'):
        return None
    return joined


def _source_path(path: object) -> str | None:
    """A spec.path, chart or values file path, relative to the source root whether or not it starts with / or ./."""
    if path is None or path == '':
        return ''
    return _join('', str(path).lstrip('/') or '.')


def _within(path: str, directory: str) -> bool:
    return not directory or path == directory or path.startswith(directory + '/')


def _load(data: bytes) -> Any:
    try:
        return yaml.load(data, Loader=_LOADER)
    except (yaml.YAMLError, ValueError):
        return None


def _load_all(data: bytes) -> list[Any]:
    try:
        return list(yaml.load_all(data, Loader=_LOADER))
    except (yaml.YAMLError, ValueError):
        return []


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _field(items: list[dict[str, Any]], name: str) -> list[str]:
    return [item[name] for item in items if isinstance(item.get(name), str)]


def kustomization_references(document: Mapping[str, Any]) -> list[str]:
    """Every local path a kustomization file names, as written (relative to its directory)."""
    refs: list[str] = []
    for name in ('resources', 'bases', 'components', 'crds', 'configurations', 'transformers', 'generators',
                 'validators', 'patchesStrategicMerge'):
        refs += _strings(document.get(name))  # inline YAML entries resolve to no file and drop out
    for name in ('patches', 'patchesJson6902', 'replacements'):
        refs += _field(_dicts(document.get(name)), 'path')
    for name in ('configMapGenerator', 'secretGenerator'):
        for generator in _dicts(document.get(name)):
            refs += [entry.split('=', 1)[-1] for entry in _strings(generator.get('files'))]
            refs += _strings(generator.get('envs'))
            if isinstance(generator.get('env'), str):
                refs.append(generator['env'])
    openapi = document.get('openapi')
    if isinstance(openapi, dict) and isinstance(openapi.get('path'), str):
        refs.append(openapi['path'])
    helm_globals = document.get('helmGlobals')
    chart_home = helm_globals.get('chartHome') if isinstance(helm_globals, dict) else None
    for chart in _dicts(document.get('helmCharts')):
        refs += _field([chart], 'valuesFile') + _strings(chart.get('additionalValuesFiles'))
        if isinstance(chart.get('name'), str):  # a local chart, or where kustomize caches a pulled one
            refs.append(posixpath.join(chart_home if isinstance(chart_home, str) else 'charts', chart['name']))
    return refs


def _shorter(into: dict[str, Chain], path: str, chain: Chain) -> None:
    known = into.get(path)
    if known is None or len(chain) < len(known):
        into[path] = chain


# -- trees ------------------------------------------------------------------------------------------------

class _Tree:
    """The files of one tree (a commit, or an artifact made from one), indexed once, with what each directory
    builds cached: kustomization files shared by many Kustomizations (`../base`) are read and parsed once."""

    def __init__(self, files: Iterable[str], read: Callable[[str], bytes | None], prefix: str = '',
                 same_as: tuple[_Tree, frozenset[str]] | None = None) -> None:
        self.files = sorted(files)
        self.prefix = prefix  # how paths of this tree are shown: '@artifact/' inside an ExternalArtifact
        self._set = frozenset(self.files)
        self._read = read
        # (another tree, the paths that differ): the tree before a change reads the rest from the one after it.
        self._same_as = same_as
        self._documents: dict[str, Any] = {}
        self.kustomization_files: dict[str, str] = {}
        for path in self.files:
            directory, name = posixpath.split(path)
            if name in KUSTOMIZATION_FILES:
                known = self.kustomization_files.get(directory)
                rank = KUSTOMIZATION_FILES.index(name)
                if known is None or rank < KUSTOMIZATION_FILES.index(posixpath.basename(known)):
                    self.kustomization_files[directory] = path
        self._builds: dict[str, dict[str, Chain]] = {}
        self._kustomized: dict[str, dict[str, Chain]] = {}
        self._building: set[str] = set()

    def under(self, directory: str) -> list[str]:
        """Files below `directory`, recursively ('' is the root)."""
        if not directory:
            return self.files
        prefix = directory + '/'
        start = bisect.bisect_left(self.files, prefix)
        # Every path with the prefix sorts between prefix and prefix + the highest character.
        return self.files[start:bisect.bisect_left(self.files, prefix + '\U0010ffff', start)]

    def is_file(self, path: str) -> bool:
        return path in self._set

    def is_dir(self, path: str) -> bool:
        if not path:
            return bool(self.files)
        prefix = path + '/'
        index = bisect.bisect_left(self.files, prefix)
        return index < len(self.files) and self.files[index].startswith(prefix)

    def read(self, path: str) -> bytes | None:
        return self._read(path) if path in self._set else None

    def document(self, path: str) -> Any:
        """The parsed YAML file at `path` (None when it is missing or is no YAML)."""
        if path not in self._documents:
            if self._same_as is not None and path not in self._same_as[1] and self._same_as[0].is_file(path):
                self._documents[path] = self._same_as[0].document(path)
            else:
                data = self.read(path)
                self._documents[path] = _load(data) if data is not None else None
        return self._documents[path]

    def builds(self, path: str) -> dict[str, Chain]:
        """What a Flux Kustomization with this spec.path builds: each file, with the chain of kustomization files
        that includes it (the file first)."""
        if path not in self._builds:
            if path in self.kustomization_files:
                self._builds[path] = self._kustomize(path)
            else:
                self._builds[path] = self._generated(path)
        return self._builds[path]

    def _generated(self, directory: str) -> dict[str, Chain]:
        # kustomize-controller's generator: every .yaml/.yml file below, except that a sub-directory with its own
        # kustomization file is added as one resource and not descended into.
        found: dict[str, Chain] = {}
        nested: dict[str, None] = {}
        start = len(directory) + 1 if directory else 0
        for path in self.under(directory):
            parts = path[start:].split('/')[:-1]
            sub = next((d for d in (posixpath.join(directory, *parts[:i + 1]) for i in range(len(parts)))
                        if d in self.kustomization_files), None)
            if sub is not None:
                nested[sub] = None
            elif path.endswith(('.yaml', '.yml')):
                found[path] = (path,)
        for sub in nested:
            for path, chain in self._kustomize(sub).items():
                _shorter(found, path, chain)
        return found

    def _kustomize(self, directory: str) -> dict[str, Chain]:
        if directory in self._kustomized:
            return self._kustomized[directory]
        if directory in self._building:  # a cycle: kustomize refuses it; its files are counted where first seen
            return {}
        self._building.add(directory)
        try:
            kfile = self.kustomization_files[directory]
            found: dict[str, Chain] = {kfile: (kfile,)}
            document = self.document(kfile)
            refs = kustomization_references(document) if isinstance(document, dict) else []
            for ref in refs:
                target = _join(directory, ref)
                if target is None:
                    continue
                if self.is_file(target):
                    _shorter(found, target, (target, kfile))
                elif self.is_dir(target):
                    for path, chain in self._directory(target).items():
                        _shorter(found, path, (*chain, kfile))
        finally:
            self._building.discard(directory)
        self._kustomized[directory] = found
        return found

    def _directory(self, directory: str) -> dict[str, Chain]:
        if directory in self.kustomization_files:
            return self._kustomize(directory)
        # kustomize fails on a directory without a kustomization file; any file there may be the fix.
        return {path: (path,) for path in self.under(directory)}

    def show(self, chain: Iterable[str]) -> Chain:
        return tuple(self.prefix + path for path in chain)


# -- ArtifactGenerator copy rules ------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _glob_regex(pattern: str, recursive: bool) -> re.Pattern[str]:
    """Go's path.Match (`recursive` False: `*` never crosses `/`) or doublestar's (True: `**` spans
    directories, `{a,b}` alternates) as a regular expression for fullmatch."""
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(pattern):
        char = pattern[i]
        at_segment = i == 0 or pattern[i - 1] == '/'
        if recursive and at_segment and pattern.startswith('**', i) and pattern[i + 2:i + 3] in ('', '/'):
            out.append('(?:.*/)?' if pattern[i + 2:i + 3] == '/' else '.*')
            i += 3
            continue
        if char == '*':
            out.append('[^/]*')
        elif char == '?':
            out.append('[^/]')
        elif char == '\\' and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == '[' and (close := pattern.find(']', i + 2)) > 0:
            body = pattern[i + 1:close]
            negate = body[:1] in ('^', '!')
            body = ''.join(c if c == '-' else re.escape(c) for c in (body[1:] if negate else body))
            out.append(f'[{"^" if negate else ""}{body}]')
            i = close
        elif recursive and char == '{':
            depth += 1
            out.append('(?:')
        elif recursive and char == ',' and depth:
            out.append('|')
        elif recursive and char == '}' and depth:
            depth -= 1
            out.append(')')
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile(''.join(out), re.DOTALL)


def _excluded(path: str, base: str, excludes: Sequence[str]) -> bool:
    """source-watcher's shouldExcludePath: a pattern matches the path from the source root, or from the copy's
    selection root; one without `/` also matches the file name alone."""
    if not excludes:
        return False
    candidates = [path]
    if base and path.startswith(base + '/'):
        candidates.append(path[len(base) + 1:])
    for candidate in candidates:
        for pattern in excludes:
            regex = _glob_regex(pattern, True)
            if regex.fullmatch(candidate) or ('/' not in pattern and regex.fullmatch(posixpath.basename(candidate))):
                return True
    return False


def _selection_root(pattern: str) -> str:
    parts = []
    for part in pattern.split('/'):
        if _GLOB_CHARS.search(part):
            break
        parts.append(part)
    return _join('', '/'.join(parts) or '.') or ''


def _into(destination: str, *parts: str) -> str:
    joined = posixpath.normpath(posixpath.join(destination or '.', *parts))
    return '' if joined == '.' else joined


def _copied(tree: _Tree, pattern: str, to: str, excludes: Sequence[str],
            staged_dirs: set[str]) -> Iterator[tuple[str, str]]:
    """(artifact path, repository path) of each file one copy rule copies, with source-watcher's cp-like rules."""
    destination = _into(to[len(_ARTIFACT):])
    pattern = pattern.removeprefix('./')
    if not _GLOB_CHARS.search(pattern):
        source = _join('', pattern or '.')
        if source is None:
            return
        if tree.is_file(source):
            if not _excluded(source, '', excludes):
                into_directory = to.endswith('/') or not destination or destination in staged_dirs
                yield (_into(destination, posixpath.basename(source)) if into_directory else destination), source
            return
        # A directory is copied as a sub-directory of the destination, like `cp -r dir dest/`.
        target = _into(destination, posixpath.basename(source))
        start = len(source) + 1 if source else 0
        for path in tree.under(source):
            parts = path[start:].split('/')
            if not any(_excluded(posixpath.join(source, *parts[:i + 1]), source, excludes) for i in range(len(parts))):
                yield _into(target, *parts), path
        return
    # fs.Glob: one path element per pattern segment; a matched directory is copied whole.
    segments = pattern.rstrip('/').split('/')
    regexes = [_glob_regex(segment, False) for segment in segments]
    root = _selection_root(pattern)
    recursive_prefix = pattern[:-3] + '/' if pattern.endswith('/**') else None
    for path in tree.under(root):
        parts = path.split('/')
        if len(parts) < len(segments) or not all(r.fullmatch(p) for r, p in zip(regexes, parts, strict=False)):
            continue
        if any(_excluded('/'.join(parts[:i]), root, excludes) for i in range(len(segments), len(parts) + 1)):
            continue
        match = '/'.join(parts[:len(segments)])
        if recursive_prefix is not None and match.startswith(recursive_prefix):
            match = match[len(recursive_prefix):]  # `dir/**` copies what is in dir, not dir itself
        yield _into(destination, match, *parts[len(segments):]), path


@dataclass(frozen=True)
class _Artifact:
    """An ExternalArtifact as its generator would make it from one commit, as far as this repository feeds it."""

    tree: _Tree
    origins: Mapping[str, tuple[str, ...]]  # repository path -> the artifact paths it is copied to
    unpacked: tuple[tuple[re.Pattern[str], str], ...]  # Extract rules: the tarballs they take, where they unpack


def _artifact(repo: _Tree, spec: Mapping[str, Any], aliases: frozenset[str]) -> _Artifact:
    staged: dict[str, list[str]] = {}
    staged_dirs: set[str] = set()
    unpacked: list[tuple[re.Pattern[str], str]] = []
    for rule in _dicts(spec.get('copy')):
        source, to = str(rule.get('from') or ''), str(rule.get('to') or '')
        alias, slash, pattern = source.removeprefix('@').partition('/')
        if not source.startswith('@') or not slash or not to.startswith(_ARTIFACT) or alias not in aliases:
            continue  # other sources' files cannot be known from here
        if rule.get('strategy') == 'Extract':
            unpacked.append((_glob_regex(pattern, True), _into(to[len(_ARTIFACT):])))
            continue
        merge = rule.get('strategy') == 'Merge'
        for target, origin in _copied(repo, pattern, to, _strings(rule.get('exclude')), staged_dirs):
            if merge and target in staged:
                staged[target].append(origin)
            else:
                staged[target] = [origin]  # a later rule overwrites
            parent = posixpath.dirname(target)
            while parent and parent not in staged_dirs:
                staged_dirs.add(parent)
                parent = posixpath.dirname(parent)
    origins: dict[str, list[str]] = {}
    for target, sources in staged.items():
        for origin in sources:
            origins.setdefault(origin, []).append(target)

    def read(path: str) -> bytes | None:
        return repo.read(staged[path][-1])

    return _Artifact(_Tree(staged, read, _ARTIFACT), {k: tuple(v) for k, v in origins.items()}, tuple(unpacked))


@dataclass(frozen=True)
class _Produced:
    """One artifact of an ArtifactGenerator, and which of its source aliases are followed git sources."""

    generator: ObjectKey
    spec: Mapping[str, Any]
    aliases: frozenset[str]


def _produced(cluster: str, generators: Iterable[Obj], followed: set[SourceRef]) -> dict[tuple[str, str], _Produced]:
    found = {}
    for generator in generators:
        key = ObjectKey(cluster, 'ArtifactGenerator', *objects.key_of(cluster, generator).ref[1:])
        aliases = set()
        for source in _dicts(objects.spec(generator).get('sources')):
            ref = (str(source.get('kind', '')), str(source.get('namespace') or key.namespace),
                   str(source.get('name', '')))
            if ref[0] == 'GitRepository' and ref in followed and source.get('alias'):
                aliases.add(str(source['alias']))
        for artifact in _dicts(objects.spec(generator).get('artifacts')):
            if artifact.get('name') and aliases:
                found[(key.namespace, str(artifact['name']))] = _Produced(key, artifact, frozenset(aliases))
    return found


# -- the assessment ---------------------------------------------------------------------------------------

def _label(kind: str, namespace: str, name: str) -> str:
    return f'{kind} {namespace}/{name}'


def _best(hits: Mapping[str, Chain]) -> Chain | None:
    return min(hits.values(), key=lambda chain: (len(chain), chain)) if hits else None


def _untraceable(ref: SourceRef) -> str:
    return f'{_label(*ref)} is made from this repository, but not file by file that can be traced'


class Change:
    """A change (the files it touched, the tree after it and, when there is one, before it) and what it affects.

    `changed` must be every path that differs between the two trees (gitctx.changed_files): a kustomization file
    not in it is read once, from the tree after the change, for both. The trees are indexed on first use and shared
    by every assessment, e.g. of several clusters.
    """

    def __init__(self, new: gitctx.TreeReader, old: gitctx.TreeReader | None, changed: Iterable[str]) -> None:
        self.changed = sorted(set(changed))
        self._changed = frozenset(self.changed)
        self._readers = [reader for reader in (new, old) if reader is not None]
        self._trees: list[_Tree] | None = None
        self._hits: dict[tuple[int, str], dict[str, Chain]] = {}
        self._artifacts: dict[tuple[int, ObjectKey, str], _Artifact] = {}
        self._landings: dict[tuple[int, ObjectKey, str], list[tuple[str, str, bool]]] = {}
        self._documents: dict[tuple[int, str], list[Any]] = {}

    @property
    def trees(self) -> list[_Tree]:
        """The tree after the change, then the one before it (where deleted files are still referenced)."""
        if self._trees is None:
            new = _Tree(self._readers[0].files(), self._readers[0].read)
            # Reading is what costs (a git round trip per file): a file the change did not touch is the same before.
            self._trees = [new, *(_Tree(reader.files(), reader.read, same_as=(new, self._changed))
                                  for reader in self._readers[1:])]
        return self._trees

    # -- what a source path builds --

    def _changed_built(self, index: int, tree: _Tree, path: str) -> dict[str, Chain]:
        """Changed files a Kustomization at `path` of a repository tree builds, with their chains."""
        cached = self._hits.get((index, path))
        if cached is None:
            built = tree.builds(path)
            if len(built) < len(self.changed):
                cached = {p: chain for p, chain in built.items() if p in self._changed}
            else:
                cached = {p: built[p] for p in self.changed if p in built}
            self._hits[(index, path)] = cached
        return cached

    def _repository_hits(self, path: str) -> dict[str, Chain]:
        hits: dict[str, Chain] = {}
        for index, tree in enumerate(self.trees):
            for changed, chain in self._changed_built(index, tree, path).items():
                _shorter(hits, changed, chain)
        return hits

    def _artifact_of(self, index: int, produced: _Produced) -> _Artifact:
        key = (index, produced.generator, str(produced.spec.get('name')))
        if key not in self._artifacts:
            self._artifacts[key] = _artifact(self.trees[index], produced.spec, produced.aliases)
        return self._artifacts[key]

    def _landed(self, index: int, produced: _Produced) -> list[tuple[str, str, bool]]:
        """(changed file, artifact path, whether a tarball unpacks there) for each place a changed file lands."""
        key = (index, produced.generator, str(produced.spec.get('name')))
        if key not in self._landings:
            artifact = self._artifact_of(index, produced)
            self._landings[key] = [(changed, target, False) for changed in self.changed
                                   for target in artifact.origins.get(changed, ())] + \
                [(changed, destination, True) for changed in self.changed
                 for regex, destination in artifact.unpacked if regex.fullmatch(changed)]
        return self._landings[key]

    def _artifact_hits(self, produced: _Produced, path: str | None) -> dict[str, Chain]:
        """Changed repository files that land in the artifact (under what a Kustomization at `path` builds there,
        or anywhere for None), with their chains through the artifact."""
        hits: dict[str, Chain] = {}
        for index in range(len(self.trees)):
            artifact = self._artifact_of(index, produced)
            built = artifact.tree.builds(path) if path is not None else None
            for changed, target, unpacked in self._landed(index, produced):
                if path is None or built is None:
                    _shorter(hits, changed, (changed, _ARTIFACT + target))
                elif unpacked:
                    # What a tarball holds is unknown: it may hold anything the Kustomization builds.
                    if _within(path, target) or _within(target, path):
                        _shorter(hits, changed, (changed, _ARTIFACT + target))
                elif target in built:
                    _shorter(hits, changed, (changed, *artifact.tree.show(built[target])))
        return hits

    def _source_hits(self, ref: SourceRef, path: str | None,
                     produced: Mapping[tuple[str, str], _Produced]) -> tuple[dict[str, Chain], str | None]:
        """(changed files with chains ending at the source, or a reason the source cannot be traced)."""
        if ref[0] == 'GitRepository':
            return (self._repository_hits(path) if path is not None else
                    {changed: (changed,) for changed in self.changed}), None
        made = produced.get((ref[1], ref[2])) if ref[0] == 'ExternalArtifact' else None
        if made is None:
            return {}, _untraceable(ref)
        label = _label(*ref)
        return {c: (*chain, label) for c, chain in self._artifact_hits(made, path).items()}, None

    def _defines(self, path: str, kind: str, namespace: str, name: str) -> bool:
        """Whether the file holds (after or before the change) the manifest of this Flux Kustomization."""
        for index, tree in enumerate(self.trees):
            key = (index, path)
            if key not in self._documents:
                data = tree.read(path)
                self._documents[key] = _load_all(data) if data is not None else []
            for document in self._documents[key]:
                metadata = document.get('metadata') if isinstance(document, dict) else None
                if not isinstance(metadata, dict) or document.get('kind') != kind:
                    continue
                if str(document.get('apiVersion', '')).startswith('kustomize.toolkit.fluxcd.io/') and \
                        metadata.get('name') == name and metadata.get('namespace') in (None, '', namespace):
                    return True
        return False

    # -- resources --

    def assess(self, cluster: str, kustomizations: Iterable[Obj], helmreleases: Iterable[Obj],
               generators: Iterable[Obj], followed: set[SourceRef]) -> list[Affected]:
        """Each Kustomization reading a followed source and each HelmRelease tied to one, affected or not."""
        kustomizations, helmreleases = list(kustomizations), list(helmreleases)
        produced = _produced(cluster, generators, followed)
        results: dict[ObjectKey, Affected] = {}
        hits_of: dict[ObjectKey, dict[str, Chain]] = {}
        for obj in kustomizations:
            key = ObjectKey(cluster, 'Kustomization', *objects.key_of(cluster, obj).ref[1:])
            ref = objects.source_ref(obj)
            if ref is None or not (ref in followed or (ref[0] == 'ExternalArtifact' and ref[1:] in produced)):
                continue
            label = _label(*key.ref)
            path = _source_path(objects.spec(obj).get('path'))
            hits, unknown = self._source_hits(ref, path, produced) if path is not None else ({}, None)
            hits_of[key] = {changed: (*chain, label) for changed, chain in hits.items()}
            best = _best(hits_of[key])
            if unknown is not None:
                results[key] = Affected(key, True, (unknown, label))
            else:
                results[key] = Affected(key, best is not None, best or ())
        appliers = _appliers(kustomizations, helmreleases)
        self._changed_definitions(cluster, results, hits_of, appliers)
        releases = [self._helmrelease(cluster, obj, followed, produced, results, appliers) for obj in helmreleases]
        return sorted(results.values(), key=lambda r: r.key) + \
            sorted((r for r in releases if r is not None), key=lambda r: r.key)

    def _changed_definitions(self, cluster: str, results: dict[ObjectKey, Affected],
                             hits_of: Mapping[ObjectKey, dict[str, Chain]],
                             appliers: Mapping[SourceRef, set[tuple[str, str]]]) -> None:
        # A Kustomization whose own manifest changed is reconciled with its new spec: it is affected through the
        # Kustomization that applies it. The manifest is found by kind and name, so a strategic-merge patch file
        # counts too; a JSON 6902 or inline patch of it in a kustomization file does not.
        for key, result in list(results.items()):
            if result.affected:
                continue
            for applier in sorted(appliers.get(key.ref, ())):
                applier_key = ObjectKey(cluster, 'Kustomization', *applier)
                found = [chain for changed, chain in hits_of.get(applier_key, {}).items()
                         if applier_key != key and self._defines(changed, 'Kustomization', key.namespace, key.name)]
                if found:
                    results[key] = Affected(key, True, (*min(found, key=len), _label(*key.ref)))
                    break

    def _helmrelease(self, cluster: str, obj: Obj, followed: set[SourceRef],
                     produced: Mapping[tuple[str, str], _Produced], results: Mapping[ObjectKey, Affected],
                     appliers: Mapping[SourceRef, set[tuple[str, str]]]) -> Affected | None:
        key = ObjectKey(cluster, 'HelmRelease', *objects.key_of(cluster, obj).ref[1:])
        label = _label(*key.ref)
        considered = False
        chains: list[Chain] = []
        ref = objects.chart_source_ref(obj)
        if ref is not None and ref in followed:
            considered = True
            chart_field = objects.spec(obj).get('chart')
            chart = objects.spec(chart_field if isinstance(chart_field, dict) else None)
            chart_name = objects.helm_chart_name(obj)
            through = _label('HelmChart', *chart_name) if chart_name else 'HelmChart'
            if ref[0] == 'GitRepository':
                chart_dir = _source_path(chart.get('chart')) if chart.get('chart') else None
                values = {_source_path(v) for v in _strings(chart.get('valuesFiles'))} - {None}
                chains += [(changed, through, label) for changed in self.changed
                           if (chart_dir is not None and _within(changed, chart_dir)) or changed in values]
            else:
                chains.append((_untraceable(ref), through, label))
        chart_ref = objects.spec(obj).get('chartRef')
        if isinstance(chart_ref, dict) and chart_ref.get('name'):
            ref = (str(chart_ref.get('kind', '')), str(chart_ref.get('namespace') or key.namespace),
                   str(chart_ref['name']))
            made = produced.get(ref[1:]) if ref[0] == 'ExternalArtifact' else None
            if ref in followed or made is not None:
                considered = True
                hits, unknown = self._source_hits(ref, None, produced)
                chains += [(*chain, label) for chain in hits.values()]
                if unknown is not None:
                    chains.append((unknown, label))
        for applier in sorted(appliers.get(key.ref, ())):
            applied = results.get(ObjectKey(cluster, 'Kustomization', *applier))
            if applied is not None:
                considered = True
                if applied.affected:
                    chains.append((*applied.why, label))
        if not considered:
            return None
        best = min(chains, key=lambda chain: (len(chain), chain)) if chains else None
        return Affected(key, best is not None, best or ())


def _appliers(kustomizations: Sequence[Obj], helmreleases: Sequence[Obj]) -> dict[SourceRef, set[tuple[str, str]]]:
    """(kind, namespace, name) of an applied Kustomization or HelmRelease -> (namespace, name) of the Kustomizations
    applying it, from their inventories and from the applied objects' own apply labels."""
    found: dict[SourceRef, set[tuple[str, str]]] = {}
    for obj in kustomizations:
        key = objects.key_of('', obj)
        for group, kind, namespace, name in objects.inventory_refs(obj):
            if (group, kind) in (('kustomize.toolkit.fluxcd.io', 'Kustomization'),
                                 ('helm.toolkit.fluxcd.io', 'HelmRelease')):
                found.setdefault((kind, namespace, name), set()).add((key.namespace, key.name))
    for kind, items in (('Kustomization', kustomizations), ('HelmRelease', helmreleases)):
        for obj in items:
            applier = objects.applied_by(obj)
            if applier is not None:
                key = objects.key_of('', obj)
                found.setdefault((kind, key.namespace, key.name), set()).add(applier)
    return found


def affected_resources(
        reader_new: gitctx.TreeReader,
        reader_old: gitctx.TreeReader | None,
        changed: Iterable[str],
        kustomizations: Iterable[Obj],
        helmreleases: Iterable[Obj],
        generators: Iterable[Obj],
        followed_sources: set[SourceRef],
        cluster: str,
) -> list[Affected]:
    """Each Kustomization reading a followed source and each HelmRelease tied to one (its chart comes from a
    followed source, or a considered Kustomization applies it), affected by the change or not, and why.

    `reader_old` reads the tree before the change (None: there is none, every file counts as new); `changed` are
    all the paths that differ between the two (gitctx.changed_files); the objects are as the API returns them, and
    `followed_sources` what followed_sources returns.
    """
    return Change(reader_new, reader_old, changed).assess(cluster, kustomizations, helmreleases, generators,
                                                          followed_sources)


# -- the git and cluster edges ----------------------------------------------------------------------------

def followed_sources(target: Target, cluster: str, sources: Iterable[Obj]) -> set[SourceRef]:
    """(kind, namespace, name) of the sources that carry the target's repository and branch, matched exactly as
    `wait` matches them (GitRepositories, ExternalArtifacts their ArtifactGenerators make, OCIRepositories whose
    origin is the repository). `sources` are those objects and the ArtifactGenerators, as listed."""
    tracker = Tracker(target, lambda commit: None)
    tracker.observe_all(cluster, sources, 0.0)
    return {status.key.ref for status in tracker.sources()}


def default_base(root: Path, sha: str, remote: str | None, branch: str | None) -> str | None:
    """What `sha` is compared with: the branch's remote-tracking commit (what Flux has now) when `sha` is not it,
    else `sha`'s first parent; None for a root commit (or where shallow history stops): every file is new."""
    tracking = gitctx.remote_tracking_commit(root, remote, branch) if remote and branch else None
    if tracking is not None and tracking != sha:
        return tracking
    try:
        return gitctx.resolve_commit(root, f'{sha}^')
    except UserError:
        return None


def affected_scope(root: Path, head: str, base: str | None, cluster: str, kustomizations: Iterable[Obj],
                   helmreleases: Iterable[Obj], generators: Iterable[Obj], followed: set[SourceRef]) -> Scope:
    """The Scope of the change from `base` to `head` (see default_base) in one cluster."""
    changed = gitctx.changed_files(root, base, head)
    with contextlib.ExitStack() as stack:
        new = stack.enter_context(gitctx.TreeReader(root, head))
        old = stack.enter_context(gitctx.TreeReader(root, base)) if base else None
        results = affected_resources(new, old, changed, kustomizations, helmreleases, generators, followed, cluster)
    return Scope(frozenset(r.key for r in results), frozenset(r.key for r in results if r.affected))
