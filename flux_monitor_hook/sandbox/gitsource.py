"""Read a git repository that plays the Flux remote, the way source-controller would.

The sandbox never clones: the "remote" is a local repository (bare or not, given as a path or a
``file://`` URL) and every question is answered with the git CLI against it.  Revision strings,
precedence of ``spec.ref`` fields and error messages follow source-controller and fluxcd/pkg
(``git/gogit/clone.go``, ``git/git.go``): see ``resolve_ref``.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from pathlib import PurePosixPath
from typing import Any

DEFAULT_BRANCH = 'master'
GIT_TIMEOUT_SECONDS = 30.0
# git archive of a large tree can take longer than a ref lookup.
EXPORT_TIMEOUT_SECONDS = 120.0

GIT_OPERATION_FAILED = 'GitOperationFailed'
EMPTY_GIT_REPOSITORY = 'EmptyGitRepository'

_CHECKOUT_PREFIX = 'failed to checkout and determine revision: '
_HEX40 = re.compile(r'^[0-9a-fA-F]{40}$')
_TAG_DEREFERENCE_SUFFIX = '^{}'

# fluxcd/pkg sourceignore: VCS, ExcludeExt, ExcludeCI and ExcludeExtra, lowest priority.
DEFAULT_IGNORE_PATTERNS = (
    '.git/', '.gitignore', '.gitmodules', '.gitattributes',
    '*.jpg', '*.jpeg', '*.gif', '*.png', '*.wmv', '*.flv', '*.tar.gz', '*.zip',
    '.github/', '.circleci/', '.travis.yml', '.gitlab-ci.yml', 'appveyor.yml', '.drone.yml',
    'cloudbuild.yaml', 'codeship-services.yml', 'codeship-steps.yml',
    '**/.goreleaser.yml', '**/.sops.yaml', '**/.flux.yaml',
)
SOURCEIGNORE_FILE = '.sourceignore'


class GitSourceError(Exception):
    """A fetch failure with the reason and message source-controller would put on FetchFailed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ResolvedRef:
    commit: str
    """Full 40-hex commit SHA."""
    revision: str
    """``status.artifact.revision`` as source-controller writes it, e.g. ``main@sha1:<sha>``."""
    reference: str
    """Full ref the commit came from (``refs/heads/main``), or '' for a bare commit."""


@dataclass(frozen=True)
class _Ref:
    name: str
    target: str
    """The commit a ref finally points at (annotated tags peeled), or '' if not a commit."""


# --------------------------------------------------------------------------- URLs


def redact_url(url: str) -> str:
    """Hide credentials in a URL's user-info so they never reach a status message."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or '@' not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition('@')
    user, has_password, _ = userinfo.partition(':')
    if has_password:
        safe = f'{user}:***'
    elif parts.scheme in ('http', 'https'):
        # A lone user-info on http(s) is usually a token (https://<token>@github.com/...).
        safe = '***'
    else:
        safe = user
    return urllib.parse.urlunsplit(parts._replace(netloc=f'{safe}@{hostport}'))


def local_path_for_url(url: str) -> str | None:
    """Map a plain path or ``file://`` URL to a local path; None for anything networked."""
    if url.startswith('file://'):
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in ('', 'localhost'):
            return None
        return urllib.parse.unquote(parts.path) or None
    if re.match(r'^[A-Za-z][A-Za-z0-9+.-]*://', url):
        return None
    # git's own rule: a colon before the first slash makes it scp-like (host:path).
    head = url.split('/', 1)[0]
    if ':' in head:
        return None
    return url or None


def unreachable_remote_error(url: str) -> GitSourceError:
    """The failure a cluster would report for a network remote; the sandbox never dials out."""
    shown = redact_url(url)
    host = urllib.parse.urlsplit(url).hostname if '://' in url else url.split(':', 1)[0]
    host = (host or '').rpartition('@')[2]
    if url.startswith(('http://', 'https://')):
        cause = f'Get "{shown.rstrip("/")}/info/refs?service=git-upload-pack": dial tcp: ' \
                f'lookup {host}: no such host'
    else:
        cause = f'dial tcp: lookup {host}: no such host'
    return _clone_failed(shown, cause)


# --------------------------------------------------------------------------- running git


def _git_env(repo: str) -> dict[str, str]:
    # Inherited GIT_DIR/GIT_INDEX_FILE (set when running inside a hook) would redirect every call.
    env = {key: value for key, value in os.environ.items() if not key.startswith('GIT_')}
    env.update({
        'GIT_TERMINAL_PROMPT': '0',
        'GIT_CONFIG_NOSYSTEM': '1',
        'GIT_CONFIG_GLOBAL': os.devnull,
        'GIT_OPTIONAL_LOCKS': '0',
        # Stop discovery at the repository itself: a plain directory inside some other checkout
        # must read as "not a repository", not as that outer checkout.
        'GIT_CEILING_DIRECTORIES': str(Path(repo).absolute().parent),
        'LC_ALL': 'C',
    })
    return env


def _git(repo: str, *args: str, timeout: float = GIT_TIMEOUT_SECONDS,
         check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        ['git', '-C', repo, *args], capture_output=True, env=_git_env(repo), timeout=timeout,
        check=False, stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout,
                                            result.stderr)
    return result


def _list_refs(repo: str) -> list[_Ref] | None:
    """All refs with their peeled commit; None when ``repo`` is not a git repository."""
    if not os.path.isdir(repo):
        return None
    result = _git(repo, 'for-each-ref',
                  '--format=%(refname) %(objecttype) %(objectname) %(*objecttype) %(*objectname)',
                  check=False)
    if result.returncode != 0:
        return None
    refs: list[_Ref] = []
    for line in result.stdout.decode('utf-8', 'replace').splitlines():
        name, kind, sha, peeled_kind, peeled = [*line.split(' '), '', ''][:5]
        if kind == 'commit':
            refs.append(_Ref(name, sha))
        elif kind == 'tag' and peeled_kind == 'commit':
            refs.append(_Ref(name, peeled))
        elif kind == 'tag':
            refs.append(_Ref(name, _peel_to_commit(repo, sha)))
        else:
            refs.append(_Ref(name, ''))
    return refs


def is_repository(path: str) -> bool:
    """Whether path is a git repository (bare or not) that git can read."""
    return _list_refs(path) is not None


def _peel_to_commit(repo: str, sha: str) -> str:
    result = _git(repo, 'rev-parse', '--verify', '--quiet', f'{sha}^{{commit}}', check=False)
    return result.stdout.decode().strip() if result.returncode == 0 else ''


def _commit_exists(repo: str, sha: str) -> bool:
    if not _HEX40.match(sha):
        return False
    result = _git(repo, 'cat-file', '-e', f'{sha.lower()}^{{commit}}', check=False)
    return result.returncode == 0


# --------------------------------------------------------------------------- ref resolution


def _revision(reference: str, sha: str) -> str:
    """fluxcd/pkg ``Commit.String()``: short ref name (after ``refs/<kind>/``) and the digest."""
    parts = reference.split('/', 2)
    if len(parts) == 3:
        return f'{parts[2]}@sha1:{sha}'
    return f'sha1:{sha}'


def _absolute_revision(reference: str, sha: str) -> str:
    """fluxcd/pkg ``Commit.AbsoluteReference()``, used when ``spec.ref.name`` is set."""
    return f'{reference}@sha1:{sha}' if reference else f'sha1:{sha}'


def _not_found(url: str, cause: str) -> GitSourceError:
    """fluxcd/pkg ``git.ErrRepositoryNotFound`` wrapped by source-controller."""
    return GitSourceError(GIT_OPERATION_FAILED,
                          f"{_CHECKOUT_PREFIX}unable to clone: {cause}: git repository: '{url}'")


def _clone_failed(url: str, cause: str) -> GitSourceError:
    return _failed(f"unable to clone '{url}': {cause}")


def _failed(message: str) -> GitSourceError:
    return GitSourceError(GIT_OPERATION_FAILED, f'{_CHECKOUT_PREFIX}{message}')


def _ref_field(ref: Mapping[str, Any] | None, key: str) -> str:
    value = (ref or {}).get(key)
    return str(value) if value else ''


def resolve_ref(repo: str, ref: Mapping[str, Any] | None, *, url: str | None = None) -> ResolvedRef:
    """Resolve a GitRepository ``spec.ref`` against ``repo`` (a path or ``file://`` URL).

    ``url`` is what messages show (``spec.url`` when the sandbox maps it to a local repo); it
    defaults to ``repo``, and credentials in it are redacted.  Precedence is branch < tag < semver <
    name < commit (the documented order; fluxcd/pkg's gogit client actually checks ``tag`` before
    ``semver`` when both are set).  No ref means branch ``master``.  Raises GitSourceError with
    source-controller's reason and message.
    """
    shown = url if url is not None else repo
    path = local_path_for_url(repo)
    if path is None:
        raise unreachable_remote_error(shown)
    url = redact_url(shown)
    branch = _ref_field(ref, 'branch')
    tag = _ref_field(ref, 'tag')
    semver = _ref_field(ref, 'semver')
    name = _ref_field(ref, 'name')
    commit = _ref_field(ref, 'commit')

    refs = _list_refs(path)
    if commit:
        return _resolve_commit(path, url, refs, commit, branch, name)
    if name:
        return _resolve_name(path, url, refs, name)
    if semver:
        return _resolve_semver(path, url, refs, semver)
    if tag:
        return _resolve_tag(url, refs, tag)
    return _resolve_branch(url, refs, branch or DEFAULT_BRANCH)


def resolve_head(repo: str, *, url: str | None = None) -> ResolvedRef:
    """The branch HEAD of ``repo`` names (a bare clone's default branch), resolved like ``ref.branch``."""
    shown = redact_url(url if url is not None else repo)
    path = local_path_for_url(repo)
    if path is None:
        raise unreachable_remote_error(shown)
    result = _git(path, 'symbolic-ref', '--quiet', 'HEAD', check=False) if os.path.isdir(path) else None
    reference = result.stdout.decode().strip() if result is not None and result.returncode == 0 else ''
    if not reference.startswith('refs/heads/'):
        raise _not_found(shown, 'repository not found')
    return resolve_ref(repo, {'branch': reference[len('refs/heads/'):]}, url=url)


def _find(refs: list[_Ref], name: str) -> _Ref | None:
    return next((r for r in refs if r.name == name), None)


def _resolve_branch(url: str, refs: list[_Ref] | None, branch: str) -> ResolvedRef:
    if refs is None:
        raise _not_found(url, 'repository not found')
    if not refs:
        # gogit clones an empty remote as a fresh init and returns no commit; source-controller
        # turns that into its own reason without the checkout prefix.
        raise GitSourceError(EMPTY_GIT_REPOSITORY, 'git repository is empty')
    reference = f'refs/heads/{branch}'
    found = _find(refs, reference)
    if found is None or not found.target:
        raise _clone_failed(url, f'couldn\'t find remote ref "{reference}"')
    return ResolvedRef(found.target, _revision(reference, found.target), reference)


def _resolve_tag(url: str, refs: list[_Ref] | None, tag: str) -> ResolvedRef:
    if refs is None:
        raise _not_found(url, 'repository not found')
    if not refs:
        raise _not_found(url, 'remote repository is empty')
    reference = f'refs/tags/{tag}'
    found = _find(refs, reference)
    if found is None or not found.target:
        raise _clone_failed(url, f'couldn\'t find remote ref "{reference}"')
    return ResolvedRef(found.target, _revision(reference, found.target), reference)


def _resolve_semver(repo: str, url: str, refs: list[_Ref] | None, expression: str) -> ResolvedRef:
    try:
        constraint = parse_constraint(expression)
    except ValueError as error:
        raise _failed(f'semver parse error: {error}') from error
    if refs is None:
        raise _not_found(url, 'repository not found')
    if not refs:
        raise _not_found(url, 'remote repository is empty')
    candidates: list[tuple[Version, _Ref]] = []
    for candidate in refs:
        if not candidate.name.startswith('refs/tags/') or not candidate.target:
            continue
        version = parse_tag_version(candidate.name[len('refs/tags/'):])
        if version is not None and constraint.check(version):
            candidates.append((version, candidate))
    if not candidates:
        raise _failed(f'no match found for semver: {expression}')
    best = max(version for version, _ in candidates)
    tied = [r for version, r in candidates if version == best]
    # Versions differing only in build metadata compare equal; Flux then takes the newest commit.
    chosen = tied[0] if len(tied) == 1 else max(tied, key=lambda r: (_commit_time(repo, r.target),
                                                                       r.name))
    return ResolvedRef(chosen.target, _revision(chosen.name, chosen.target), chosen.name)


def _commit_time(repo: str, sha: str) -> int:
    result = _git(repo, 'show', '-s', '--format=%ct', sha, check=False)
    text = result.stdout.decode().strip()
    return int(text) if text.isdigit() else 0


def _resolve_name(repo: str, url: str, refs: list[_Ref] | None, name: str) -> ResolvedRef:
    if refs is None:
        raise _failed(f"unable to list remote for '{url}': repository not found")
    if not refs:
        raise _failed(f"unable to list remote for '{url}': remote repository is empty")
    if name.startswith('/') or name.endswith('/'):
        raise _failed(f"ref {name} is invalid; Git refs cannot begin or end with a slash '/'")
    lookup = name.removesuffix(_TAG_DEREFERENCE_SUFFIX)
    found = _find(refs, lookup)
    if found is None or not found.target:
        raise _failed(f"unable to resolve ref '{name}' to a specific commit")
    return ResolvedRef(found.target, _absolute_revision(name, found.target), name)


def _resolve_commit(repo: str, url: str, refs: list[_Ref] | None, commit: str, branch: str,
                    name: str) -> ResolvedRef:
    if refs is None:
        raise _not_found(url, 'repository not found')
    if not refs:
        raise _not_found(url, 'remote repository is empty')
    reference = f'refs/heads/{branch}' if branch else ''
    tip = ''
    if branch:
        head = _find(refs, reference)
        if head is None or not head.target:
            raise _clone_failed(url, f'couldn\'t find remote ref "{reference}"')
        tip = head.target
    sha = commit.lower()
    # gogit parses the hash with plumbing.NewHash, so a short SHA never matches an object; with a
    # branch only that branch's history is fetched.
    reachable = _commit_exists(repo, sha) and (not tip or is_ancestor(repo, sha, tip))
    if not reachable:
        raise _failed(f"unable to resolve commit object for '{commit}': object not found")
    if name:
        return ResolvedRef(sha, _absolute_revision(name, sha), name)
    return ResolvedRef(sha, _revision(reference, sha), reference)


# --------------------------------------------------------------------------- semver


@dataclass(frozen=True, order=False)
class Version:
    """A Masterminds/semver version: build metadata is kept but ignored in comparisons."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ''
    original: str = ''

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        pre = tuple((0, int(p), '') if p.isdigit() else (1, 0, p) for p in self.prerelease)
        # A release sorts after every prerelease of the same version.
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Version) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Version) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Version) -> bool:
        return self._key() >= other._key()


_VERSION_RE = re.compile(
    r'^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?'
    r'(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$'
)


def parse_version(text: str) -> Version | None:
    match = _VERSION_RE.match(text)
    if not match:
        return None
    major, minor, patch, pre, build = match.groups()
    return Version(int(major), int(minor or 0), int(patch or 0),
                   tuple(pre.split('.')) if pre else (), build or '', text)


def parse_tag_version(tag: str) -> Version | None:
    """fluxcd/pkg ``version.ParseVersion``: loose semver, but it must have three dotted parts."""
    if len(tag.split('.', 2)) != 3:
        return None
    return parse_version(tag)


@dataclass(frozen=True)
class _Term:
    op: str
    version: Version
    dirty: bool
    minor_dirty: bool
    patch_dirty: bool

    def check(self, v: Version) -> bool:
        # Masterminds v3: a prerelease only satisfies a term that itself names a prerelease.
        if v.prerelease and not self.version.prerelease and (self.op != '!=' or self.dirty):
            return False
        c = self.version
        if self.op in ('', '='):
            return self._tilde(v) if self.dirty else v == c
        if self.op == '!=':
            if not self.dirty:
                return v != c
            if v.major != c.major:
                return True
            return not self.minor_dirty and v.minor != c.minor
        if self.op == '>':
            if not self.dirty:
                return v > c
            if v.major != c.major:
                return v.major > c.major
            if self.minor_dirty:
                return False  # ">11" needs 12 or higher
            if self.patch_dirty:
                return v.minor > c.minor  # ">11.1" needs 11.2 or higher
            return v > c
        if self.op == '<':
            return v < c
        if self.op in ('>=', '=>'):
            return v >= c
        if self.op in ('<=', '=<'):
            if not self.dirty:
                return v <= c
            if v.major != c.major:
                return v.major < c.major
            return self.minor_dirty or v.minor <= c.minor
        if self.op in ('~', '~>'):
            return self._tilde(v)
        return self._caret(v)

    def _tilde(self, v: Version) -> bool:
        c = self.version
        if v < c:
            return False
        if (c.major, c.minor, c.patch) == (0, 0, 0) and not (self.minor_dirty or self.patch_dirty):
            return True  # "~0.0.0" and "*" accept everything
        if v.major != c.major:
            return False
        return self.minor_dirty or v.minor == c.minor

    def _caret(self, v: Version) -> bool:
        c = self.version
        if v < c:
            return False
        if c.major > 0 or self.minor_dirty:
            return v.major == c.major
        if v.major > 0:
            return False
        if c.minor > 0 or self.patch_dirty:
            return v.minor == c.minor
        if v.minor > 0:
            return False
        return v.patch == c.patch


@dataclass(frozen=True)
class Constraint:
    """OR of AND-groups of terms, like Masterminds ``semver.Constraints``."""

    groups: tuple[tuple[_Term, ...], ...]

    def check(self, version: Version) -> bool:
        return any(all(term.check(version) for term in group) for group in self.groups)


_OPS = r'(=>|=<|>=|<=|!=|~>|=|>|<|~|\^)?'
_CVER = r'(v?[0-9xX*]+(?:\.[0-9xX*]+)?(?:\.[0-9xX*]+)?(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)'
_TERM_RE = re.compile(rf'\s*{_OPS}\s*{_CVER}\s*')
_HYPHEN_RE = re.compile(rf'{_CVER}\s+-\s+{_CVER}')


def _parse_term(op: str, text: str) -> _Term:
    parts = text.lstrip('vV').split('+', 1)[0]
    core, _, pre = parts.partition('-')
    numbers = core.split('.')
    wild = [n in ('x', 'X', '*') for n in numbers]
    if len(numbers) < 1 or wild[0]:
        return _Term(op, Version(0, 0, 0, tuple(pre.split('.')) if pre else ()), True, False, False)
    if len(numbers) < 2 or wild[1]:
        return _Term(op, Version(int(numbers[0]), 0, 0, tuple(pre.split('.')) if pre else ()),
                     True, True, False)
    if len(numbers) < 3 or wild[2]:
        return _Term(op, Version(int(numbers[0]), int(numbers[1]), 0,
                                 tuple(pre.split('.')) if pre else ()), True, False, True)
    version = parse_version(text)
    if version is None:
        raise ValueError(text)
    return _Term(op, version, False, False, False)


def parse_constraint(expression: str) -> Constraint:
    """Parse a Masterminds/semver v3 range: ``>=1.0 <2``, ``1.2.x``, ``~1.2``, ``^1``, ``*``."""
    groups: list[tuple[_Term, ...]] = []
    for raw_group in expression.split('||'):
        group_text = _HYPHEN_RE.sub(lambda m: f'>= {m.group(1)}, <= {m.group(2)}', raw_group)
        terms: list[_Term] = []
        for chunk in re.split(r'\s*,\s*', group_text.strip()):
            # Without commas, terms are separated by spaces (">=1.0 <2.0").
            position = 0
            while position < len(chunk):
                match = _TERM_RE.match(chunk, position)
                if not match or match.end() == position:
                    raise ValueError(f'improper constraint: {expression}')
                try:
                    terms.append(_parse_term(match.group(1) or '', match.group(2)))
                except ValueError as error:
                    raise ValueError(f'improper constraint: {expression}') from error
                position = match.end()
        if not terms:
            raise ValueError(f'improper constraint: {expression}')
        groups.append(tuple(terms))
    return Constraint(tuple(groups))


# --------------------------------------------------------------------------- commits and files


def commit_subject(repo: str, sha: str) -> str:
    """The commit message as fluxcd/pkg ``Commit.ShortMessage()`` shows it in NewArtifact events:
    the first line, cut to 50 characters plus ``...``."""
    path = local_path_for_url(repo) or repo
    result = _git(path, 'cat-file', 'commit', sha, check=False)
    if result.returncode != 0:
        raise GitSourceError(GIT_OPERATION_FAILED, f"unable to resolve commit object for '{sha}': "
                                                   'object not found')
    _, _, message = result.stdout.decode('utf-8', 'replace').partition('\n\n')
    subject = message.split('\n', 1)[0]
    return f'{subject[:50]}...' if len(subject) > 50 else subject


def is_ancestor(repo: str, ancestor: str, descendant: str) -> bool:
    """True when ``ancestor`` is reachable from ``descendant`` (a commit is its own ancestor).

    Unknown commits count as not related rather than as an error: the checker asks this about
    commits the remote may never have received.
    """
    path = local_path_for_url(repo) or repo
    result = _git(path, 'merge-base', '--is-ancestor', ancestor, descendant, check=False)
    return result.returncode == 0


def read_file_at(repo: str, sha: str, path: str) -> bytes | None:
    """The bytes of ``path`` in commit ``sha``; None if it is missing or not a file."""
    repo_path = local_path_for_url(repo) or repo
    clean = PurePosixPath('/', path).as_posix().lstrip('/')
    if not clean:
        return None
    result = _git(repo_path, 'cat-file', 'blob', f'{sha}:{clean}', check=False)
    return result.stdout if result.returncode == 0 else None


# --------------------------------------------------------------------------- .sourceignore


@dataclass(frozen=True)
class _IgnoreRule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _glob_to_regex(glob: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if glob.startswith('**/', i):
            out.append('(?:.*/)?')
            i += 3
            continue
        if glob.startswith('/**', i) and i + 3 == len(glob):
            out.append('/.*')
            i += 3
            continue
        if glob.startswith('**', i):
            out.append('.*')
            i += 2
            continue
        if char == '*':
            out.append('[^/]*')
        elif char == '?':
            out.append('[^/]')
        elif char == '[':
            end = glob.find(']', i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = glob[i + 1:end].replace('\\', '\\\\')
                if body.startswith('!'):
                    body = '^' + body[1:]
                out.append(f'[{body}]')
                i = end
        elif char == '\\' and i + 1 < len(glob):
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return ''.join(out)


def parse_ignore_patterns(lines: list[str] | tuple[str, ...]) -> list[_IgnoreRule]:
    """gitignore syntax as used by .sourceignore and ``spec.ignore`` (patterns relative to root)."""
    rules: list[_IgnoreRule] = []
    for raw in lines:
        line = raw.rstrip('\n').rstrip()
        if not line or line.startswith('#'):
            continue
        negate = line.startswith('!')
        if negate:
            line = line[1:]
        dir_only = line.endswith('/')
        line = line.rstrip('/')
        if not line:
            continue
        anchored = '/' in line
        body = _glob_to_regex(line.lstrip('/'))
        regex = f'^{body}$' if anchored else f'^(?:.*/)?{body}$'
        rules.append(_IgnoreRule(re.compile(regex), negate, dir_only))
    return rules


def _ignored(rules: list[_IgnoreRule], path: str, is_dir: bool) -> bool:
    verdict = False
    for rule in rules:
        if rule.dir_only and not is_dir:
            continue
        if rule.regex.match(path):
            verdict = not rule.negate
    return verdict


class _IgnoreMatcher:
    """Walks a path's parents first, as an archiver skipping ignored directories would."""

    def __init__(self, rules: list[_IgnoreRule]) -> None:
        self.rules = rules
        self._dirs: dict[str, bool] = {}

    def _dir_excluded(self, directory: str) -> bool:
        if directory in self._dirs:
            return self._dirs[directory]
        parent = directory.rpartition('/')[0]
        excluded = (bool(parent) and self._dir_excluded(parent)) or \
            _ignored(self.rules, directory, True)
        self._dirs[directory] = excluded
        return excluded

    def excluded(self, path: str, is_dir: bool) -> bool:
        parent = path.rpartition('/')[0]
        if parent and self._dir_excluded(parent):
            return True
        return self._dir_excluded(path) if is_dir else _ignored(self.rules, path, False)


# --------------------------------------------------------------------------- export


_export_locks: dict[str, threading.Lock] = {}
_export_locks_guard = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _export_locks_guard:
        return _export_locks.setdefault(key, threading.Lock())


def export_tree(repo: str, sha: str, dest_root: str | os.PathLike[str], *,
                ignore: str | None = None) -> Path:
    """Materialise commit ``sha`` under ``dest_root`` and return the directory, like the
    artifact tarball kustomize-controller unpacks.

    Cached per commit (and ``ignore`` text): a finished export is returned at once, concurrent
    callers for the same commit wait for one export, and the directory appears by atomic rename so
    other processes never see it half-written.  Callers must treat the result as read-only.
    Files are filtered with source-controller's default exclusions, the repository's root
    ``.sourceignore`` (nested .sourceignore files are not read) and ``ignore`` (``spec.ignore``).
    ``git archive`` applies in-tree ``export-ignore`` attributes, which Flux would not.
    """
    path = local_path_for_url(repo) or repo
    if not _HEX40.match(sha):
        # Only immutable names may key the cache: a branch name would serve a stale tree.
        peeled = _peel_to_commit(path, sha)
        if not peeled:
            raise GitSourceError(GIT_OPERATION_FAILED,
                                 f"unable to resolve commit object for '{sha}': object not found")
        sha = peeled
    sha = sha.lower()
    key = sha if ignore is None else f'{sha}-{hashlib.sha256(ignore.encode()).hexdigest()[:12]}'
    root = Path(dest_root)
    target = root / key
    if target.is_dir():
        return target
    with _lock_for(str(target.absolute())):
        if target.is_dir():
            return target
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f'.{key}.', dir=root))
        try:
            _extract(path, sha, staging, ignore)
            try:
                os.rename(staging, target)
            except OSError:
                # Another process finished the same export first; theirs is as good as ours.
                if not target.is_dir():
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return target


def _extract(repo: str, sha: str, staging: Path, ignore: str | None) -> None:
    rules_text = list(DEFAULT_IGNORE_PATTERNS)
    root_ignore = read_file_at(repo, sha, SOURCEIGNORE_FILE)
    if root_ignore is not None:
        rules_text.extend(root_ignore.decode('utf-8', 'replace').splitlines())
    if ignore:
        rules_text.extend(ignore.splitlines())
    matcher = _IgnoreMatcher(parse_ignore_patterns(rules_text))
    result = _git(repo, 'archive', '--format=tar', sha, timeout=EXPORT_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        raise GitSourceError(GIT_OPERATION_FAILED, f"unable to archive commit '{sha}': "
                                                   f'{result.stderr.decode(errors="replace").strip()}')
    with tarfile.open(fileobj=io.BytesIO(result.stdout), mode='r:') as archive:
        # source-controller archives regular files and directories only (no symlinks).
        members = [m for m in archive.getmembers()
                   if (m.isfile() or m.isdir())
                   and not matcher.excluded(m.name.rstrip('/'), m.isdir())]
        if hasattr(tarfile, 'data_filter'):
            archive.extractall(staging, members=members, filter='data')
        else:  # Python < 3.10.12: members are already limited to files and directories
            archive.extractall(staging, members=members)
