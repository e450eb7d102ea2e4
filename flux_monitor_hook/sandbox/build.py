"""Turn a Kustomization's ``spec.path`` in an exported source tree into manifests, like
kustomize-controller does (``internal/controller/kustomization_controller.go`` and fluxcd/pkg
``kustomize/kustomize_generator.go``, ``kustomize_varsub.go``):

1. ``spec.path`` is joined to the tree securely and must exist (else ArtifactFailed).
2. A missing kustomization.yaml is generated from the directory's manifests, and the Flux fields
   ``targetNamespace``, ``namePrefix``, ``nameSuffix``, ``patches``, ``components`` and ``images``
   are written into the kustomization of that directory (so they act at the same level).
3. Real kustomize builds it (``kubectl kustomize --load-restrictor LoadRestrictionsNone``), or the
   pure-Python ``kustomize_fallback`` when kubectl is absent or not wanted.
4. Objects must have apiVersion, kind and name; ``postBuild.substitute`` runs per object;
   ``commonMetadata`` is added.

The caller's tree (usually the read-only export cache of ``gitsource.export_tree``) is never
written: when a kustomization file has to be generated or amended, the tree is mirrored into a
private temporary directory with hard links (cheap; falls back to copies across filesystems) and
the new kustomization file replaces the link there, so the cached inode is never touched.  With
the fallback nothing is written at all: the amended kustomization is passed in memory.
"""
from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from flux_monitor_hook.sandbox import kustomize_fallback
from flux_monitor_hook.sandbox.kustomize_fallback import KUSTOMIZATION_FILES
from flux_monitor_hook.sandbox.kustomize_fallback import FallbackError
from flux_monitor_hook.sandbox.kustomize_fallback import dump_yaml
from flux_monitor_hook.sandbox.kustomize_fallback import find_kustomization_file
from flux_monitor_hook.sandbox.kustomize_fallback import load_yaml_documents
from flux_monitor_hook.sandbox.kustomize_fallback import resource_metadata_problem

BUILD_FAILED = 'BuildFailed'
ARTIFACT_FAILED = 'ArtifactFailed'
KUBECTL_TIMEOUT_SECONDS = 60.0
SUBSTITUTE_KEY = 'kustomize.toolkit.fluxcd.io/substitute'
VAR_NAME_PATTERN = '^[_[:alpha:]][_[:alpha:][:digit:]]*$'
_VAR_NAME_RE = re.compile(r'^[_a-zA-Z][_a-zA-Z0-9]*$')

Obj = dict[str, Any]


class BuildError(Exception):
    """A build failure; ``reason`` is the Ready=False reason kustomize-controller would set."""

    reason = BUILD_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PathNotFoundError(BuildError):
    """``spec.path`` does not exist in the artifact: Ready=False/ArtifactFailed, and
    ``lastAttemptedRevision`` is not moved."""

    reason = ARTIFACT_FAILED


# --------------------------------------------------------------------------- path and generation


def resolve_path(root: str | os.PathLike[str], path: str | None) -> Path:
    """``securejoin.SecureJoin(root, spec.path)``: ``..`` cannot climb out of the tree."""
    clean = posixpath.normpath('/' + (path or '').replace('\\', '/')).lstrip('/')
    target = Path(root) / clean if clean and clean != '.' else Path(root)
    if not target.exists():
        raise PathNotFoundError(f'kustomization path not found: stat {clean or "."}: '
                                'no such file or directory')
    return target


def _is_kustomization_dir(directory: Path) -> bool:
    return any((directory / name).is_file() for name in KUSTOMIZATION_FILES)


def _validate_manifest_file(path: Path, shown: str) -> None:
    """What kustomize's ``ResourceFactory.SliceFromBytes`` accepts: mappings with kind and name."""
    try:
        docs = load_yaml_documents(path.read_bytes())
    except yaml.YAMLError as error:
        raise BuildError(f'failed to decode Kubernetes YAML from {shown}: '
                         f'{" ".join(str(error).split())}') from error
    for doc in docs:
        problem = resource_metadata_problem(doc)
        if problem:
            raise BuildError(f'failed to decode Kubernetes YAML from {shown}: {problem}')


def generate_kustomization(directory: str | os.PathLike[str],
                           root: str | os.PathLike[str] | None = None) -> Obj:
    """The kustomization Flux writes for a directory without one (``scanManifests``).

    Walks the directory in lexical order; a sub-directory holding a kustomization file is added
    as one resource and not descended into; every ``.yaml``/``.yml`` file is added after checking
    that it decodes as Kubernetes objects (a file that does not fails the build, as in Flux).
    """
    base = Path(directory)
    shown_root = Path(root) if root is not None else base
    resources: list[str] = []

    def walk(current: Path) -> None:
        for entry in sorted(os.scandir(current), key=lambda e: e.name):
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if _is_kustomization_dir(path):
                    resources.append('./' + path.relative_to(base).as_posix())
                else:
                    walk(path)
            elif entry.is_file(follow_symlinks=False) and path.suffix in ('.yaml', '.yml'):
                _validate_manifest_file(path, _shown(path, shown_root))
                resources.append('./' + path.relative_to(base).as_posix())

    walk(base)
    kustomization: Obj = {'apiVersion': 'kustomize.config.k8s.io/v1beta1', 'kind': 'Kustomization'}
    if resources:
        kustomization['resources'] = resources
    else:
        # Flux's placeholder: kustomize refuses an empty kustomization.
        kustomization['namespace'] = '_placeholder'
    return kustomization


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


_REMOTE_PREFIXES = ('git::', 'gh:', 'ssh://', 'https://', 'http://', 'git@', 'github.com:',
                    'github.com/')


def _is_local_relative(path: str) -> bool:
    """fluxcd/pkg ``IsLocalRelativePath``."""
    lowered = path.lower()
    if any(len(prefix) < len(path) and lowered.startswith(prefix) for prefix in _REMOTE_PREFIXES):
        return False
    return not os.path.isabs(path) and not os.path.isabs(lowered.removeprefix('file://'))


def flux_overlay(spec: Mapping[str, Any], directory: Path | None = None) -> Obj:
    """The kustomization fields a Kustomization spec contributes (fluxcd/pkg GenerateManifest)."""
    overlay: Obj = {}
    if spec.get('targetNamespace'):
        overlay['namespace'] = str(spec['targetNamespace'])
    for key in ('namePrefix', 'nameSuffix'):
        if spec.get(key):
            overlay[key] = str(spec[key])
    for key in ('patches', 'patchesStrategicMerge', 'patchesJson6902', 'images'):
        if spec.get(key):
            overlay[key] = list(spec[key])
    components: list[str] = []
    for component in spec.get('components') or []:
        if not _is_local_relative(str(component)):
            raise BuildError(f"component path '{component}' must be local and relative")
        if spec.get('ignoreMissingComponents') and directory is not None and \
                not (directory / str(component)).exists():
            continue
        components.append(str(component))
    if components:
        overlay['components'] = components
    return overlay


def _amend(kustomization: Obj, overlay: Mapping[str, Any]) -> Obj:
    result = dict(kustomization)
    for key in ('namespace', 'namePrefix', 'nameSuffix'):
        if key in overlay:
            result[key] = overlay[key]
    for key in ('patches', 'patchesStrategicMerge', 'patchesJson6902', 'components'):
        if key in overlay:
            result[key] = [*(result.get(key) or []), *overlay[key]]
    if 'images' in overlay:
        images = [dict(image) for image in result.get('images') or []]
        for image in overlay['images']:
            existing = next((i for i in images if i.get('name') == image.get('name')), None)
            if existing is None:
                images.append({k: v for k, v in image.items() if v})
                continue
            # Flux merges field by field; newTag and digest replace each other as a unit.
            if image.get('newName'):
                existing['newName'] = image['newName']
            if image.get('newTag') or image.get('digest'):
                existing.pop('newTag', None)
                existing.pop('digest', None)
                existing.update({k: image[k] for k in ('newTag', 'digest') if image.get(k)})
        result['images'] = images
    return result


def _load_kustomization_file(kfile: Path, shown: str) -> Obj:
    try:
        docs = load_yaml_documents(kfile.read_bytes())
    except yaml.YAMLError as error:
        raise BuildError(f'kustomize build failed: invalid Kustomization: '
                         f'{" ".join(str(error).split())}') from error
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise BuildError(f'kustomize build failed: invalid Kustomization: {shown} is not a mapping')
    return docs[0]


# --------------------------------------------------------------------------- building


def kubectl_available() -> bool:
    return shutil.which('kubectl') is not None


def build_kustomization(directory: str | os.PathLike[str], *,
                        overlay: Mapping[str, Any] | None = None,
                        root: str | os.PathLike[str] | None = None,
                        use_kubectl: bool | None = None) -> list[Obj]:
    """``kustomize build`` of one directory as Flux runs it: generate a kustomization if there
    is none, amend it with ``overlay`` (see ``flux_overlay``), build with kubectl when
    ``use_kubectl`` (default: when kubectl is on PATH), else with the fallback.

    ``root`` is the top of the source tree: resources may reach up to it (``../base``) and error
    messages show paths relative to it.  It defaults to ``directory``.
    """
    target = Path(directory)
    top = Path(root) if root is not None else target
    if top != target and top.resolve() not in target.resolve().parents:
        top = target
    # Without a root nothing bounds where resources may come from (kubectl is not bounded either).
    bound = top if root is not None else None
    if not target.exists():
        raise PathNotFoundError(f'kustomization path not found: stat {_shown(target, top)}: '
                                'no such file or directory')
    kfile = find_kustomization_file(target) if target.is_dir() else None
    kustomization: Obj | None = None
    if target.is_dir() and kfile is None:
        kustomization = generate_kustomization(target, top)
    if overlay:
        if kustomization is None and kfile is not None:
            kustomization = _load_kustomization_file(kfile, _shown(kfile, top))
        if kustomization is not None:
            kustomization = _amend(kustomization, overlay)
    if use_kubectl is None:
        use_kubectl = kubectl_available()
    if use_kubectl:
        return _build_with_kubectl(target, top, kustomization, kfile)
    try:
        return kustomize_fallback.build(target, kustomization=kustomization, root=bound)
    except FallbackError as error:
        raise BuildError(f'kustomize build failed: {error.message}') from error


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _build_with_kubectl(target: Path, top: Path, kustomization: Obj | None,
                        kfile: Path | None) -> list[Obj]:
    kubectl = shutil.which('kubectl')
    if kubectl is None:
        raise BuildError('kustomize build failed: kubectl not found on PATH')
    if kustomization is None:
        return _run_kubectl(kubectl, target, [top])
    if kfile is None:
        return _build_generated(kubectl, target, top, kustomization)
    with tempfile.TemporaryDirectory(prefix='kustomization-') as scratch:
        # An amended kustomization keeps every relative path it has: mirror the tree.
        mirror = Path(scratch) / 'src'
        shutil.copytree(top, mirror, symlinks=True, copy_function=_link_or_copy)
        build_dir = mirror / target.resolve().relative_to(top.resolve())
        destination = build_dir / kfile.name
        # Unlink first: writing through the hard link would change the cached original.
        destination.unlink(missing_ok=True)
        destination.write_text(dump_yaml(kustomization))
        return _run_kubectl(kubectl, build_dir, [mirror, top])


def _build_generated(kubectl: str, target: Path, top: Path, kustomization: Obj) -> list[Obj]:
    """A generated kustomization lists only resources and components, so it can live in a
    scratch directory that points back at the originals: nothing is copied."""
    with tempfile.TemporaryDirectory(prefix='kustomization-') as scratch:
        work = Path(scratch).resolve()
        source = target.resolve()
        rewritten = dict(kustomization)
        # kustomize refuses absolute directory roots, so point back with relative paths.
        entries: dict[str, str] = {}
        for key in ('resources', 'components'):
            if kustomization.get(key):
                rewritten[key] = []
                for entry in kustomization[key]:
                    relative = os.path.relpath(source / str(entry), work)
                    entries[relative] = str(entry)
                    rewritten[key].append(relative)
        (work / 'kustomization.yaml').write_text(dump_yaml(rewritten))
        return _run_kubectl(kubectl, work, [top, target, work], entries)


def _kubectl_env() -> dict[str, str]:
    env = dict(os.environ)
    # The sandbox never reaches a network: remote bases fail fast instead of being fetched.
    env.update({
        'HTTP_PROXY': 'http://127.0.0.1:9', 'HTTPS_PROXY': 'http://127.0.0.1:9', 'NO_PROXY': '',
        'http_proxy': 'http://127.0.0.1:9', 'https_proxy': 'http://127.0.0.1:9', 'no_proxy': '',
        'GIT_ALLOW_PROTOCOL': 'file', 'GIT_TERMINAL_PROMPT': '0', 'KUBECONFIG': os.devnull,
    })
    return env


_KLOG_ERROR = re.compile(r'"command failed" err="((?:[^"\\]|\\.)*)"')


def _kubectl_error_text(stderr: str) -> str:
    """kustomize's message from kubectl's stderr: ``error: <msg>`` or, in newer kubectl, a klog
    line ``... "command failed" err="<Go-quoted msg>"``."""
    match = _KLOG_ERROR.search(stderr)
    if match:
        quoted = match.group(1)
        try:
            return str(json.loads(f'"{quoted}"'))
        except json.JSONDecodeError:
            return quoted.replace('\\"', '"').replace('\\\\', '\\')
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith('#')]
    for line in lines:
        if line.startswith('error: '):
            return line[len('error: '):]
    return ' '.join(lines) or 'kubectl kustomize failed'


def _run_kubectl(kubectl: str, directory: Path, roots: list[Path],
                 entries: Mapping[str, str] | None = None) -> list[Obj]:
    try:
        result = subprocess.run(
            [kubectl, 'kustomize', '--load-restrictor', 'LoadRestrictionsNone', str(directory)],
            capture_output=True, env=_kubectl_env(), timeout=KUBECTL_TIMEOUT_SECONDS, check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as error:
        raise BuildError('kustomize build failed: context deadline exceeded') from error
    if result.returncode != 0:
        message = _kubectl_error_text(result.stderr.decode('utf-8', 'replace'))
        for relative in sorted(entries or {}, key=len, reverse=True):
            message = message.replace(f"'{relative}'", f"'{(entries or {})[relative]}'")
        for root in roots:
            for form in {str(root), str(root.resolve())}:
                message = message.replace(form + '/', '').replace(form, '.')
        raise BuildError(f'kustomize build failed: {message}')
    try:
        docs = load_yaml_documents(result.stdout)
    except yaml.YAMLError as error:
        raise BuildError(f'kustomize build failed: {error}') from error
    return [doc for doc in docs if isinstance(doc, dict)]


def _check_objects(objects: list[Obj]) -> None:
    for obj in objects:
        metadata = obj.get('metadata') if isinstance(obj.get('metadata'), dict) else {}
        if not obj.get('apiVersion') or not obj.get('kind') or not (metadata or {}).get('name'):
            raise BuildError('failed to decode Kubernetes apiVersion, kind and name from: '
                             f'{dump_yaml(obj).strip()}')


def build_manifests(root: str | os.PathLike[str], spec: Mapping[str, Any], *,
                    use_kubectl: bool | None = None, variables: Mapping[str, str] | None = None,
                    strict_substitution: bool = False) -> list[Obj]:
    """Everything kustomize-controller does between fetching the artifact and applying it.

    ``root`` is the unpacked artifact, ``spec`` the Kustomization's spec.  ``variables`` are
    extra postBuild variables (what ``substituteFrom`` would load; inline ``substitute`` wins).
    ``strict_substitution`` is kustomize-controller's feature gate StrictPostBuildSubstitutions.
    Raises PathNotFoundError (reason ArtifactFailed) or BuildError (reason BuildFailed).
    """
    directory = resolve_path(root, str(spec.get('path') or ''))
    overlay = flux_overlay(spec, directory)
    objects = build_kustomization(directory, overlay=overlay, root=root, use_kubectl=use_kubectl)
    _check_objects(objects)
    post_build = spec.get('postBuild')
    if isinstance(post_build, Mapping):
        merged = {**(variables or {}), **(post_build.get('substitute') or {})}
        objects = substitute(objects, merged, strict=strict_substitution,
                             always=post_build.get('substituteStrategy') == 'Always')
    common = spec.get('commonMetadata')
    if isinstance(common, Mapping):
        for obj in objects:
            metadata = obj.setdefault('metadata', {})
            for key in ('labels', 'annotations'):
                if common.get(key):
                    metadata.setdefault(key, {}).update(common[key])
    return objects


# --------------------------------------------------------------------------- postBuild


def _gvk_text(obj: Mapping[str, Any]) -> str:
    """kustomize's ``resid.Gvk.String()``: ``Deployment.v1.apps``, ``ConfigMap.v1.[noGrp]``."""
    group, _, version = str(obj.get('apiVersion') or '').rpartition('/')
    return f'{obj.get("kind") or "[noKind]"}.{version or "[noVer]"}.{group or "[noGrp]"}'


def _has_dollar(value: Any) -> bool:
    if isinstance(value, str):
        return '$' in value
    if isinstance(value, dict):
        return any(_has_dollar(k) or _has_dollar(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_dollar(v) for v in value)
    return False


def substitute(objects: list[Obj], variables: Mapping[str, Any], *, strict: bool = False,
               always: bool = False) -> list[Obj]:
    """postBuild variable substitution as kustomize-controller runs it on each built object.

    Runs only when there are variables (or ``always``, the ``Always`` substituteStrategy); skips
    objects labelled or annotated ``kustomize.toolkit.fluxcd.io/substitute: disabled``; with
    ``strict`` an undefined variable without a default fails the build.
    """
    values = {str(k): str(v).replace('\n', '') for k, v in variables.items()}
    if not values and not always:
        return objects
    result: list[Obj] = []
    for obj in objects:
        metadata = obj.get('metadata') or {}
        if (metadata.get('labels') or {}).get(SUBSTITUTE_KEY) == 'disabled' or \
                (metadata.get('annotations') or {}).get(SUBSTITUTE_KEY) == 'disabled':
            result.append(obj)
            continue
        where = f"post build failed for '{_gvk_text(obj)}/{metadata.get('name', '')}'"
        for name in values:
            if not _VAR_NAME_RE.match(name):
                raise BuildError(f"{where}: envsubst error: '{name}' var name is invalid, "
                                 f"must match '{VAR_NAME_PATTERN}'")
        if not _has_dollar(obj):
            result.append(obj)
            continue
        text = dump_yaml(obj)
        try:
            replaced = envsubst(text, values, strict=strict)
        except EnvsubstError as error:
            raise BuildError(f'{where}: envsubst error: variable substitution failed: '
                             f'{error}') from error
        if replaced == text:
            result.append(obj)
            continue
        try:
            docs = load_yaml_documents(replaced)
        except yaml.YAMLError as error:
            raise BuildError(f'{where}: envsubst error: YAMLToJSON: '
                             f'{" ".join(str(error).split())}') from error
        result.append(docs[0] if docs and isinstance(docs[0], dict) else {})
    return result


class EnvsubstError(Exception):
    pass


def _to_substr(value: str, args: list[str]) -> str:
    try:
        offset = int(args[0]) if args and args[0].strip() else 0
    except ValueError:
        return value
    if offset < 0:
        offset = max(len(value) + offset, 0)
    if offset > len(value):
        return ''
    if len(args) < 2:
        return value[offset:]
    try:
        length = int(args[1])
    except ValueError:
        return value[offset:]
    return value[offset:offset + length] if length >= 0 else value[offset:length]


def _trim(value: str, pattern: str, prefix: bool, longest: bool) -> str:
    cuts = range(len(value), -1, -1) if longest else range(len(value) + 1)
    for cut in cuts:
        part = value[:cut] if prefix else value[len(value) - cut:]
        if fnmatch.fnmatchcase(part, pattern):
            return value[cut:] if prefix else value[:len(value) - cut]
    return value


def _replace(value: str, name: str, args: list[str]) -> str:
    pattern = args[0] if args else ''
    replacement = args[1] if len(args) > 1 else ''
    regex = fnmatch.translate(pattern).removesuffix(r'\Z').removeprefix('(?s:').removesuffix(')')
    if name == '/#':
        return re.sub(f'^(?:{regex})', lambda _: replacement, value, count=1)
    if name == '/%':
        return re.sub(f'(?:{regex})$', lambda _: replacement, value, count=1)
    return re.sub(regex, lambda _: replacement, value, count=0 if name == '//' else 1)


_FUNCS: dict[str, Callable[[str, list[str]], str]] = {
    ',': lambda v, a: v[:1].lower() + v[1:],
    ',,': lambda v, a: v.lower(),
    '^': lambda v, a: v[:1].upper() + v[1:],
    '^^': lambda v, a: v.upper(),
    '#len': lambda v, a: str(len(v)),
    ':': _to_substr,
    '#': lambda v, a: _trim(v, ''.join(a), prefix=True, longest=False),
    '##': lambda v, a: _trim(v, ''.join(a), prefix=True, longest=True),
    '%': lambda v, a: _trim(v, ''.join(a), prefix=False, longest=False),
    '%%': lambda v, a: _trim(v, ''.join(a), prefix=False, longest=True),
}
_DEFAULT_OPS = frozenset({'=', ':=', ':-', ':?', ':+'})
_IDENT_RE = re.compile(r'\w+')


class _Envsubst:
    """fluxcd/pkg envsubst: ``${var}``, ``${var:=default}``/``:-``/``=``, nested defaults,
    ``${#var}``, case changes, ``${var:off:len}``, ``#``/``%`` trimming, ``/`` replacing, and
    ``$$`` as an escaped ``$``.  Only the braced form is expanded."""

    def __init__(self, text: str, variables: Mapping[str, str], strict: bool) -> None:
        self.text = text
        self.pos = 0
        self.variables = variables
        self.strict = strict

    def run(self) -> str:
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            start = text.find('$', self.pos)
            if start == -1:
                out.append(text[self.pos:])
                break
            out.append(text[self.pos:start])
            following = text[start + 1:start + 2]
            if following == '$':
                out.append('$')
                self.pos = start + 2
            elif following == '{':
                self.pos = start + 2
                out.append(self._func())
            else:
                out.append('$')
                self.pos = start + 1
        return ''.join(out)

    def _peek(self) -> str:
        return self.text[self.pos:self.pos + 1]

    def _ident(self) -> str:
        match = _IDENT_RE.match(self.text, self.pos)
        if not match:
            raise EnvsubstError('unable to parse variable name')
        self.pos = match.end()
        return match.group(0)

    def _close(self) -> None:
        if self._peek() != '}':
            raise EnvsubstError('missing closing brace')
        self.pos += 1

    def _param(self, stop: str) -> str:
        """Text up to one of ``stop`` (or ``}``), expanding nested ``${...}``."""
        out: list[str] = []
        while True:
            char = self._peek()
            if not char:
                raise EnvsubstError('unable to parse substitution within function')
            if char == '}' or char in stop:
                return ''.join(out)
            if self.text.startswith('${', self.pos):
                self.pos += 2
                out.append(self._func())
                continue
            out.append(char)
            self.pos += 1

    def _lookup(self, name: str, op: str) -> str:
        if name in self.variables:
            return self.variables[name]
        if self.strict and op not in _DEFAULT_OPS:
            raise EnvsubstError(f'variable not set (strict mode): "{name}"')
        return ''

    def _func(self) -> str:
        if self._peek() == '#':
            self.pos += 1
            name = self._ident()
            self._close()
            return _FUNCS['#len'](self._lookup(name, '#'), [])
        name = self._ident()
        char = self._peek()
        text = self.text
        if char == '}':
            self.pos += 1
            return self._lookup(name, '')
        if char == '=' or (char == ':' and text[self.pos + 1:self.pos + 2] in ('=', '-', '?', '+')):
            op = '=' if char == '=' else text[self.pos:self.pos + 2]
            self.pos += len(op)
            default = self._param('')
            self._close()
            value = self._lookup(name, op)
            return value if value else default
        if char == ':':
            self.pos += 1
            args = [self._param(':')]
            if self._peek() == ':':
                self.pos += 1
                args.append(self._param(''))
            self._close()
            return _to_substr(self._lookup(name, ':'), args)
        if char in (',', '^'):
            op = text[self.pos:self.pos + 2] if text[self.pos + 1:self.pos + 2] == char else char
            self.pos += len(op)
            self._close()
            return _FUNCS[op](self._lookup(name, op), [])
        if char in ('#', '%'):
            op = text[self.pos:self.pos + 2] if text[self.pos + 1:self.pos + 2] == char else char
            self.pos += len(op)
            pattern = self._param('')
            self._close()
            return _FUNCS[op](self._lookup(name, op), [pattern])
        if char == '/':
            op = '/'
            if text[self.pos + 1:self.pos + 2] in ('/', '#', '%'):
                op = text[self.pos:self.pos + 2]
            self.pos += len(op)
            args = [self._param('/')]
            if self._peek() == '/':
                self.pos += 1
                args.append(self._param(''))
            self._close()
            return _replace(self._lookup(name, op), op, args)
        raise EnvsubstError('missing closing brace')


def envsubst(text: str, variables: Mapping[str, str], *, strict: bool = False) -> str:
    """Expand ``${...}`` in ``text`` the way Flux's postBuild does (raises EnvsubstError)."""
    return _Envsubst(text, variables, strict).run()
