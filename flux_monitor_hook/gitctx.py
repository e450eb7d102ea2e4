"""What flux-monitor needs to know from git: the repository, its remotes, commits and their files.

Every call runs the git CLI on an explicit `-C <root>` with an argument list, never a shell.
Files are read from git objects, not the work tree, so what is reported is what was committed.
Revisions are checked before they reach git, so a value such as `--output=x` cannot pass as an
option, and remote URLs are redacted whenever they reach a message.
"""
from __future__ import annotations

import os
import posixpath
import re
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal
from typing import NamedTuple

from flux_monitor_hook import exit_codes
from flux_monitor_hook.errors import UserError
from flux_monitor_hook.git_urls import redact_text

RefKind = Literal['branch', 'tag', 'commit']

_TIMEOUT = 30.0
_NO_GIT = 'git is not installed or not on PATH; install git to use flux-monitor'
_SHORT = 7
_HEX = re.compile(r'[0-9a-fA-F]{4,64}')
_FULL_SHA = re.compile(r'[0-9a-f]{40}|[0-9a-f]{64}')
_BATCH_HEADER = re.compile(rb'([0-9a-f]{40}|[0-9a-f]{64}) ([a-z]+) ([0-9]+)\n')
# A name git would look up as a ref (no `~`, `^`, `:`, `@{`... revision syntax).
_PLAIN_NAME = re.compile(r'(?!@$)(?!.*@\{)[^\s~^:?*\[\\]+')
_NO_COMMIT = re.compile(r'0{40}|0{64}')
# The refs `git rev-parse NAME` tries, in its order; the first that exists wins.
_DWIM_RULES = ('refs/{}', 'refs/tags/{}', 'refs/heads/{}', 'refs/remotes/{}', 'refs/remotes/{}/HEAD')

# Variables git sets for the hooks it runs: GIT_DIR in submodules and worktrees, GIT_INDEX_FILE
# pointing at a temporary index during `git commit -a`, GIT_WORK_TREE in some versions. Left in
# place they would win over `-C root` (see pre-commit's no_git_env and its issue #300).
_REPOSITORY_ENV = frozenset((
    'GIT_DIR',
    'GIT_WORK_TREE',
    'GIT_INDEX_FILE',
    'GIT_OBJECT_DIRECTORY',
    'GIT_ALTERNATE_OBJECT_DIRECTORIES',
    'GIT_COMMON_DIR',
    'GIT_PREFIX',
))


class GitError(UserError):
    """A git command failed for a reason none of the functions here explains better."""


class FetchResult(NamedTuple):  # not a dataclass: importing dataclasses costs git's hooks ~8 ms
    """How `fetch` went; true when it succeeded, else `error` is git's redacted reason."""

    ok: bool
    error: str = ''

    def __bool__(self) -> bool:
        return self.ok


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _REPOSITORY_ENV}
    # Credentials are never asked for: flux-monitor runs in hooks and CI with nobody to answer.
    env['GIT_TERMINAL_PROMPT'] = '0'
    env.update(extra)
    return env


def _no_lazy_fetch_env() -> dict[str, str]:
    # In a partial clone a missing object is fetched from the promisor remote on demand; asking
    # whether a commit exists must stay local and fast (git >= 2.44 honours this).
    return _env(GIT_NO_LAZY_FETCH='1')


def _command_name(args: Sequence[str]) -> str:
    return next((arg for arg in args if not arg.startswith('-')), 'git')


def _run(
        root: Path,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        timeout: float = _TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    cmd = ['git', '-C', os.fspath(root), *args]
    try:
        return subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
            env=_env() if env is None else env, check=False,
        )
    except FileNotFoundError:
        raise GitError(_NO_GIT) from None
    except subprocess.TimeoutExpired:
        raise GitError(
            f'git {_command_name(args)} did not finish within {timeout:g} s in {root}',
        ) from None


def _decode(data: bytes) -> str:
    # Paths are bytes to git; surrogateescape round-trips the ones that are not UTF-8.
    return data.decode('utf-8', 'surrogateescape')


def _reason(stderr: bytes) -> str:
    lines = [line.strip() for line in _decode(stderr).splitlines() if line.strip()]
    # `warning:` and `hint:` lines may come first; the `fatal:`/`error:` line is the reason.
    for line in lines:
        if line.startswith(('fatal:', 'error:')):
            return redact_text(line)
    return redact_text(lines[0]) if lines else ''


def _error(args: Sequence[str], result: subprocess.CompletedProcess[bytes]) -> GitError:
    reason = _reason(result.stderr) or f'exit status {result.returncode}'
    return GitError(f'git {_command_name(args)} failed: {reason}')


def _out(root: Path, args: Sequence[str], *, env: dict[str, str] | None = None) -> str:
    result = _run(root, args, env=env)
    if result.returncode != 0:
        raise _error(args, result)
    return _decode(result.stdout).rstrip('\n')


def _zsplit(data: bytes) -> list[str]:
    return [_decode(item) for item in data.split(b'\0') if item]


def _check_rev(rev: str) -> None:
    if not rev or rev.startswith('-') or '\0' in rev or '\n' in rev:
        raise UserError(
            f'invalid revision {redact_text(rev)!r}: give a commit SHA, branch or tag '
            f'(a revision cannot be empty or start with "-")',
            exit_codes.USAGE,
        )


def _check_name(name: str, what: str) -> None:
    if not name or name.startswith('-') or '\0' in name or '\n' in name:
        raise UserError(
            f'invalid {what} name {redact_text(name)!r}: it cannot be empty or start with "-"',
            exit_codes.USAGE,
        )


def short(sha: str) -> str:
    """`sha` shortened for display, as `git log --oneline` does."""
    return sha[:_SHORT]


def repo_root(path: Path | None = None) -> Path:
    """The top of the work tree containing `path` (default: the current directory)."""
    where = Path.cwd() if path is None else path
    result = _run(where, ('rev-parse', '--absolute-git-dir', '--show-toplevel'))
    lines = _decode(result.stdout).splitlines()
    if result.returncode == 0 and len(lines) == 2:
        return Path(lines[1])
    if lines:  # git found a git directory but no work tree: a bare repository or inside `.git`
        raise UserError(
            f'not inside a git work tree: {where} is the git directory {lines[0]}; run '
            f'flux-monitor inside a checkout of your GitOps repository or pass --repo-path',
            exit_codes.USAGE,
        )
    raise UserError(
        f'not a git repository: {where}; run flux-monitor inside your GitOps repository or '
        f'pass --repo-path',
        exit_codes.USAGE,
    )


def git_dir(root: Path) -> Path:
    """The absolute git directory of `root` (`.git/worktrees/<name>` in a linked worktree)."""
    return Path(_out(root, ('rev-parse', '--absolute-git-dir')))


def current_branch(root: Path) -> str | None:
    """The checked-out branch (even one without commits yet), or None on a detached HEAD."""
    result = _run(root, ('symbolic-ref', '--quiet', 'HEAD'))
    if result.returncode == 1:
        return None
    if result.returncode != 0:
        raise _error(('symbolic-ref',), result)
    ref = _decode(result.stdout).strip()
    return ref.removeprefix('refs/heads/') if ref.startswith('refs/heads/') else None


def _config(root: Path) -> dict[str, str]:
    # One `git config --list` answers every question about remotes and upstreams at once, and
    # needs no escaping of branch names into config key patterns. The last value wins, as in git.
    data = _run(root, ('config', '--null', '--list'))
    if data.returncode != 0:
        raise _error(('config',), data)
    config: dict[str, str] = {}
    for entry in _zsplit(data.stdout):
        key, _, value = entry.partition('\n')
        config[key] = value
    return config


def _config_remotes(config: dict[str, str]) -> list[str]:
    names: dict[str, None] = {}
    for key in config:
        section, _, rest = key.partition('.')
        subsection, dot, _ = rest.rpartition('.')
        if section == 'remote' and dot and subsection:
            names[subsection] = None
    return list(names)


def _config_upstream(config: dict[str, str], branch: str) -> tuple[str, str] | None:
    remote = config.get(f'branch.{branch}.remote')
    merge = config.get(f'branch.{branch}.merge')
    # `.` means the branch tracks another local branch: nothing Flux could fetch.
    if not remote or not merge or remote == '.':
        return None
    return remote, merge.removeprefix('refs/heads/')


def upstream(root: Path, branch: str) -> tuple[str, str] | None:
    """(remote, branch on that remote) that `branch` tracks, from `branch.<b>.remote/merge`."""
    return _config_upstream(_config(root), branch.removeprefix('refs/heads/'))


def remotes(root: Path) -> list[str]:
    """The names of the configured remotes, in configuration order."""
    return _out(root, ('remote',)).split()


def default_remote(root: Path, branch: str | None) -> str | None:
    """The remote to follow: `branch`'s upstream remote, else `origin`, else the only remote."""
    config = _config(root)
    names = _config_remotes(config)
    tracked = _config_upstream(config, branch.removeprefix('refs/heads/')) if branch else None
    if tracked is not None and tracked[0] in names:
        return tracked[0]
    if 'origin' in names:
        return 'origin'
    return names[0] if len(names) == 1 else None


def remote_url(root: Path, remote: str) -> str:
    """The URL `remote` fetches from, with `url.<base>.insteadOf` applied as git applies it.

    The URL may hold credentials: pass it through git_urls.redact_url before showing it.
    """
    _check_name(remote, 'remote')
    args = ('remote', 'get-url', '--', remote)
    result = _run(root, args)
    if result.returncode == 0:
        return _decode(result.stdout).strip()
    names = remotes(root)
    if remote in names:  # git failed for another reason than an unknown remote
        raise _error(args, result)
    if not names:
        raise UserError(
            "this repository has no remote; add the one Flux fetches from: "
            "git remote add origin URL",
            exit_codes.USAGE,
        )
    raise UserError(
        f"unknown remote {redact_text(remote)!r}: this repository's remotes are "
        f"{', '.join(names)}; pass --remote NAME with one of them",
        exit_codes.USAGE,
    )


def _has_commits(root: Path) -> bool:
    head = _run(root, ('rev-parse', '--verify', '--quiet', 'HEAD'), env=_no_lazy_fetch_env())
    if head.returncode == 0:
        return True
    # HEAD is unborn, yet another branch may have commits (after `git checkout --orphan`).
    refs = _run(root, ('for-each-ref', '--count=1', '--format=%(refname)'))
    return bool(refs.stdout.strip())


def _unknown_revision(root: Path, rev: str) -> UserError:
    if not _has_commits(root):
        return UserError(
            f"unknown revision {redact_text(rev)!r}: the repository {root} has no commits yet; "
            f"commit and push first",
            exit_codes.USAGE,
        )
    hint = 'check the spelling, or git fetch if it was pushed from another clone'
    if is_shallow(root):
        hint += '; this clone is shallow, git fetch --unshallow brings the rest of the history'
    return UserError(
        f"unknown revision {redact_text(rev)!r}: not a commit, branch or tag in {root}; {hint}",
        exit_codes.USAGE,
    )


def resolve_commit(root: Path, rev: str) -> str:
    """The full SHA of the commit `rev` names: a SHA (abbreviated or not), branch, tag (annotated
    tags peeled), `HEAD~1`, `origin/main`... Unknown revisions raise UserError."""
    _check_rev(rev)
    result = _run(
        root, ('rev-parse', '--verify', '--quiet', '--end-of-options', f'{rev}^{{commit}}'),
        env=_no_lazy_fetch_env(),
    )
    sha = _decode(result.stdout).strip()
    if result.returncode == 0 and sha:
        return sha
    raise _unknown_revision(root, rev)


def ref_name(root: Path, rev: str) -> str | None:
    """The full ref `rev` names (`refs/heads/main`, `refs/tags/v1`), None for a commit expression
    such as a SHA or `HEAD~1`. A name that is both a branch and a tag is the tag, as in git."""
    _check_rev(rev)
    result = _run(root, ('rev-parse', '--verify', '--quiet', '--symbolic-full-name',
                         '--end-of-options', rev))
    if result.returncode != 0:
        raise _unknown_revision(root, rev)
    name = _decode(result.stdout).strip()
    if name == 'HEAD':  # a detached HEAD names no ref
        return None
    if name or not _PLAIN_NAME.fullmatch(rev) or _FULL_SHA.fullmatch(rev):
        return name or None
    # git prints nothing (and succeeds) for a name that is ambiguous between refs.
    candidates = [rule.format(rev) for rule in _DWIM_RULES]
    listed = _run(root, ('for-each-ref', '--format=%(refname)', '--', *candidates))
    existing = set(_decode(listed.stdout).splitlines())
    return next((ref for ref in candidates if ref in existing), None)


def ref_kind(root: Path, rev: str) -> RefKind:
    """Whether `rev` names a branch (local or remote-tracking; `HEAD` on a branch), a tag or
    only a commit."""
    name = ref_name(root, rev) or ''
    if name.startswith('refs/tags/'):
        return 'tag'
    if name.startswith(('refs/heads/', 'refs/remotes/')):
        return 'branch'
    return 'commit'


def is_tag(root: Path, rev: str) -> bool:
    """Whether `rev` names a tag, lightweight or annotated."""
    return ref_kind(root, rev) == 'tag'


def remote_tracking_commit(root: Path, remote: str, branch: str) -> str | None:
    """The SHA of `refs/remotes/<remote>/<branch>`: the branch as of this clone's last fetch or
    push. No network; None when there is no such ref."""
    _check_name(remote, 'remote')
    _check_name(branch, 'branch')
    ref = f'refs/remotes/{remote}/{branch.removeprefix("refs/heads/")}'
    # `show-ref --verify` takes an exact ref name only, never revision syntax like `main~1`.
    result = _run(root, ('show-ref', '--verify', '--hash', '--', ref))
    sha = _decode(result.stdout).strip()
    return sha if result.returncode == 0 and sha else None


def is_shallow(root: Path) -> bool:
    """Whether this is a shallow clone, whose history stops at some commits."""
    return _out(root, ('rev-parse', '--is-shallow-repository')) == 'true'


def has_commit(root: Path, sha: str) -> bool:
    """Whether the commit `sha` (full or a unique abbreviation) is in the local object store."""
    if not _HEX.fullmatch(sha):
        return False
    result = _run(root, ('cat-file', '-e', f'{sha}^{{commit}}'), env=_no_lazy_fetch_env())
    return result.returncode == 0


def _shallow_commits(root: Path) -> list[str]:
    relative = _out(root, ('rev-parse', '--git-path', 'shallow'))
    try:
        return (root / relative).read_text().split()
    except FileNotFoundError:
        return []


def is_ancestor(root: Path, ancestor: str, descendant: str) -> bool | None:
    """Whether `ancestor` is `descendant` or in its history; None when this clone cannot tell:
    either commit is not here, or shallow history stops before the answer is certain."""
    _check_rev(ancestor)
    _check_rev(descendant)
    env = _no_lazy_fetch_env()
    result = _run(root, ('merge-base', '--is-ancestor', '--end-of-options', ancestor, descendant),
                  env=env)
    if result.returncode == 0:
        return True
    if result.returncode != 1:
        return None
    boundary = _shallow_commits(root)
    if not boundary:
        return False
    # Shallow boundary commits have no parents here, so `descendant` has a merge base with them
    # exactly when its history reaches one: only then may `ancestor` hide beyond the cut.
    cut = _run(root, ('merge-base', '--end-of-options', descendant, *boundary), env=env)
    if cut.returncode == 1:
        return False
    return None


def _run_detached(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, bytes]:
    # A new session has no controlling terminal, so ssh cannot prompt for a passphrase or host
    # key and hang; killing the whole group also stops ssh or a credential helper, which would
    # otherwise hold the stderr pipe open after git is killed and block communicate().
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        start_new_session=hasattr(os, 'killpg'),
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except BaseException as exc:  # the timeout, or Ctrl-C while waiting
        if hasattr(os, 'killpg'):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            proc.kill()
        proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            return None, b''
        raise
    return proc.returncode, stderr


def fetch(
        root: Path,
        remote: str,
        refspecs: list[str] | None = None,
        *,
        timeout: float = 30,
) -> FetchResult:
    """`git fetch` `refspecs` (a SHA, a branch, `+refs/heads/x:refs/remotes/o/x`...; default:
    the remote's configured refspecs) from `remote` without prompting for credentials.

    Never raises: failure is a false result whose `error` is git's reason, credentials redacted.
    Tags are not followed and FETCH_HEAD is left alone; fetching a bare SHA only brings the
    commit and its history into the object store, which is what ancestry checks need.
    """
    specs = refspecs or []
    if not remote or any(not arg or arg.startswith('-') for arg in (remote, *specs)):
        return FetchResult(False, 'invalid remote or refspec')
    cmd = [
        'git', '-C', os.fspath(root), 'fetch', '--quiet', '--no-tags', '--no-write-fetch-head',
        '--no-recurse-submodules', '--no-auto-gc', '--end-of-options', remote, *specs,
    ]
    # GCM_INTERACTIVE: Git Credential Manager would otherwise open a login window.
    env = _env(GCM_INTERACTIVE='never')
    try:
        status, stderr = _run_detached(cmd, env, timeout)
    except OSError as exc:
        return FetchResult(False, redact_text(f'cannot run git: {exc}'))
    if status is None:
        return FetchResult(False, f'git fetch {redact_text(remote)} timed out after {timeout:g} s')
    if status != 0:
        return FetchResult(False, _reason(stderr) or f'git fetch exited with status {status}')
    return FetchResult(True)


def changed_files(root: Path, base: str | None, head: str) -> list[str]:
    """Paths (relative to the root) added, modified or deleted between commits `base` and `head`;
    every file of `head` when `base` is None or all zeros (how hooks spell "no commit", e.g. for
    a new branch in pre-push). A rename is a deletion plus an addition."""
    _check_rev(head)
    if base is not None and _NO_COMMIT.fullmatch(base):
        base = None
    if base is None:
        args: tuple[str, ...] = ('ls-tree', '-r', '-z', '--name-only', '--full-tree',
                                 '--end-of-options', head)
    else:
        _check_rev(base)
        # Plumbing: diff-tree ignores diff.renames, diff.relative and other porcelain config.
        args = ('diff-tree', '-r', '-z', '--name-only', '--no-renames', '--no-commit-id',
                '--end-of-options', base, head)
    result = _run(root, args)
    if result.returncode != 0:
        for rev in (base, head):
            if rev is not None:
                resolve_commit(root, rev)  # raises the clearer unknown-revision error
        raise _error(args, result)
    return _zsplit(result.stdout)


def _tree_path(path: str) -> str | None:
    norm = posixpath.normpath(path.lstrip('/'))
    if norm == '.':
        return ''
    if norm == '..' or norm.startswith('../'):
        return None
    return norm


def _list_tree(root: Path, commit: str, path: str) -> list[str]:
    directory = _tree_path(path)
    if directory is None:
        return []
    args = ['--literal-pathspecs', 'ls-tree', '-r', '-z', '--name-only', '--full-tree',
            '--end-of-options', commit]
    if directory:
        args += ['--', directory]
    result = _run(root, args)
    if result.returncode != 0:
        resolve_commit(root, commit)
        raise _error(args, result)
    names = _zsplit(result.stdout)
    # ls-tree also matches a file named exactly `directory`; only what is under it counts.
    return [name for name in names if name.startswith(f'{directory}/')] if directory else names


class TreeReader:
    """Files of one commit, read through a single long-lived `git cat-file --batch`.

    Reading many small files this way costs one process instead of one per file. Use it as a
    context manager, which ends the process; `commit` may be any revision resolve_commit takes.
    """

    def __init__(self, root: Path, commit: str) -> None:
        _check_rev(commit)
        self.root = root
        self._rev = commit
        self._sha: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> TreeReader:
        return self

    def __exit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def sha(self) -> str:
        """The full SHA of the commit read; raises UserError when it is not a known commit."""
        if self._sha is None:
            found = self._request(f'{self._rev}^{{commit}}')
            if found is None:
                self.close()
                raise _unknown_revision(self.root, self._rev)
            self._sha = found[0]
        return self._sha

    def _process(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            try:
                # Lazy fetches stay allowed here: in a partial clone the files must be read.
                self._proc = subprocess.Popen(
                    ['git', '-C', os.fspath(self.root), 'cat-file', '--batch'],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env=_env(),
                )
            except FileNotFoundError:
                raise GitError(_NO_GIT) from None
        return self._proc

    def _request(self, spec: str) -> tuple[str, str, bytes] | None:
        proc = self._process()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(spec.encode('utf-8', 'surrogateescape') + b'\n')
            proc.stdin.flush()
            header = proc.stdout.readline()
        except BrokenPipeError:
            header = b''
        if not header:
            raise self._died()
        match = _BATCH_HEADER.fullmatch(header)
        if match is None:  # `<spec> missing` or `<spec> ambiguous`: no content follows
            return None
        size = int(match[3])
        content = proc.stdout.read(size)
        if len(content) != size or proc.stdout.read(1) != b'\n':
            raise self._died()
        return match[1].decode(), match[2].decode(), content

    def _died(self) -> GitError:
        proc = self._proc
        assert proc is not None
        proc.kill()
        _, stderr = proc.communicate()
        self._proc = None
        return GitError(f'git cat-file failed: {_reason(stderr) or "it exited unexpectedly"}')

    def read(self, path: str) -> bytes | None:
        """The content of the file at `path` (relative to the root), None when there is no file
        there (missing, or a directory)."""
        name = _tree_path(path)
        if not name:
            return None
        sha = self.sha
        if '\n' in name:  # cannot be spelled in the line-based --batch protocol
            result = _run(self.root, ('cat-file', 'blob', f'{sha}:{name}'))
            return result.stdout if result.returncode == 0 else None
        found = self._request(f'{sha}:{name}')
        if found is None or found[1] != 'blob':
            return None
        return found[2]

    def files(self, path: str = '') -> list[str]:
        """Every file under the directory `path` (all files for ''), recursively, as paths relative
        to the root; empty when there is no such directory."""
        return _list_tree(self.root, self.sha, path)

    def close(self) -> None:
        """End the cat-file process; reads after this start a new one."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:  # communicate() closes stdin, upon which cat-file exits
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def read_blob(root: Path, commit: str, path: str) -> bytes | None:
    """The content of `path` at `commit`, None when that commit has no file there."""
    with TreeReader(root, commit) as reader:
        return reader.read(path)


def list_tree(root: Path, commit: str, path: str = '') -> list[str]:
    """Every file under directory `path` at `commit`, recursively, relative to the root."""
    _check_rev(commit)
    return _list_tree(root, commit, path)


def commit_time(root: Path, sha: str) -> float:
    """The committer time of commit `sha` as a unix timestamp."""
    _check_rev(sha)
    result = _run(root, ('cat-file', 'commit', sha))
    if result.returncode != 0:
        raise _unknown_revision(root, sha)
    header = result.stdout.split(b'\n\n', 1)[0]
    for line in header.split(b'\n'):
        if line.startswith(b'committer '):
            # `committer Name <email> 1700000000 +0000`: the name may hold anything but newlines.
            return float(line.rsplit(b' ', 2)[1])
    raise GitError(f'git cat-file failed: commit {short(sha)} has no committer line')
