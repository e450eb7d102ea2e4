"""Build real git repositories in temporary directories for tests.

Every git command here runs with a private environment: no global or system config, a fixed
identity, and none of the GIT_DIR-like variables a surrounding hook may have set.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

IDENTITY = {
    'GIT_AUTHOR_NAME': 'Flux Monitor Tests',
    'GIT_AUTHOR_EMAIL': 'tests@example.invalid',
    'GIT_COMMITTER_NAME': 'Flux Monitor Tests',
    'GIT_COMMITTER_EMAIL': 'tests@example.invalid',
}
ISOLATION = {
    'GIT_CONFIG_GLOBAL': os.devnull,
    'GIT_CONFIG_NOSYSTEM': '1',
    'GIT_TERMINAL_PROMPT': '0',
}


def git_env(date: str | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith('GIT_')}
    env.update(IDENTITY)
    env.update(ISOLATION)
    if date is not None:
        env['GIT_AUTHOR_DATE'] = env['GIT_COMMITTER_DATE'] = date
    return env


def git(repo: Path, *args: str, date: str | None = None) -> str:
    result = subprocess.run(
        ['git', '-C', str(repo), *args], capture_output=True, text=True, env=git_env(date),
        timeout=30, check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f'git {" ".join(args)} failed in {repo}: {result.stderr}')
    return result.stdout.strip()


def init(path: Path, *, bare: bool = False, branch: str = 'main') -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, 'init', '--quiet', f'--initial-branch={branch}', *(['--bare'] if bare else []))
    return path


def write(repo: Path, files: Mapping[str, str | None]) -> None:
    """Write files relative to the work tree; None deletes one."""
    for name, content in files.items():
        target = repo / name
        if content is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)


def commit(
        repo: Path,
        message: str = 'change',
        files: Mapping[str, str | None] | None = None,
        *,
        date: str | None = None,
) -> str:
    """Commit `files` (and whatever else changed) and return the new commit's SHA."""
    write(repo, files or {})
    git(repo, 'add', '--all', '--', '.')
    git(repo, 'commit', '--quiet', '--allow-empty', '--no-verify', '-m', message, date=date)
    return git(repo, 'rev-parse', 'HEAD')


def tag(repo: Path, name: str, ref: str = 'HEAD', message: str | None = None) -> None:
    """A lightweight tag, or an annotated one when there is a message."""
    if message is None:
        git(repo, 'tag', name, ref)
    else:
        git(repo, 'tag', '--annotate', '--message', message, name, ref)


def clone(source: Path | str, dest: Path, *options: str) -> Path:
    url = source.as_uri() if isinstance(source, Path) else source
    git(dest.parent, 'clone', '--quiet', *options, url, str(dest))
    return dest


def remote_and_clone(tmp: Path, files: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    """A bare `remote.git` with one pushed commit, and a `work` clone tracking its main."""
    remote = init(tmp / 'remote.git', bare=True)
    seed = init(tmp / 'seed')
    commit(seed, 'initial', files or {'README.md': 'hello\n'})
    git(seed, 'push', '--quiet', remote.as_uri(), 'main')
    return remote, clone(remote, tmp / 'work')


def push(repo: Path, *refs: str) -> None:
    git(repo, 'push', '--quiet', 'origin', *(refs or ('HEAD',)))
