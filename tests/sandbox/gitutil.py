"""Build real git repositories in temporary directories for sandbox tests.

Everything runs the git CLI with a private environment, so neither the user's global config nor
variables inherited from a surrounding hook (GIT_DIR, GIT_INDEX_FILE, ...) leak in.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

_IDENTITY = {
    'GIT_AUTHOR_NAME': 'Sandbox Tester',
    'GIT_AUTHOR_EMAIL': 'tester@example.invalid',
    'GIT_COMMITTER_NAME': 'Sandbox Tester',
    'GIT_COMMITTER_EMAIL': 'tester@example.invalid',
}


def git_env(date: str | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith('GIT_')}
    env.update(_IDENTITY)
    env.update({
        'GIT_CONFIG_NOSYSTEM': '1',
        'GIT_CONFIG_GLOBAL': os.devnull,
        'GIT_TERMINAL_PROMPT': '0',
        'LC_ALL': 'C',
    })
    if date:
        env['GIT_AUTHOR_DATE'] = date
        env['GIT_COMMITTER_DATE'] = date
    return env


def git(repo: Path, *args: str, date: str | None = None) -> str:
    result = subprocess.run(['git', '-C', str(repo), *args], capture_output=True, text=True,
                            env=git_env(date), timeout=30, check=False)
    if result.returncode != 0:
        raise AssertionError(f'git {" ".join(args)} failed: {result.stderr}')
    return result.stdout.strip()


def init_repo(path: Path, branch: str = 'main') -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, 'init', '--quiet', f'--initial-branch={branch}')
    return path


def write_files(repo: Path, files: Mapping[str, str | bytes | None]) -> None:
    """Write (or, with None, delete) files relative to the work tree."""
    for name, content in files.items():
        target = repo / name
        if content is None:
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


def commit(repo: Path, message: str, files: Mapping[str, str | bytes | None] | None = None,
           date: str | None = None) -> str:
    """Commit the given file changes (everything in the tree is staged) and return the SHA."""
    if files:
        write_files(repo, files)
    git(repo, 'add', '--all', '--', '.')
    git(repo, 'commit', '--quiet', '--allow-empty', '-m', message, date=date)
    return git(repo, 'rev-parse', 'HEAD')


def tag(repo: Path, name: str, ref: str = 'HEAD', message: str | None = None) -> None:
    """A lightweight tag, or an annotated one when a message is given."""
    if message is None:
        git(repo, 'tag', name, ref)
    else:
        git(repo, 'tag', '-a', name, '-m', message, ref)


def bare_clone(repo: Path, dest: Path) -> Path:
    """A bare mirror of ``repo`` (all branches and tags), the shape a git server holds."""
    subprocess.run(['git', 'clone', '--quiet', '--mirror', '--', str(repo), str(dest)],
                   capture_output=True, text=True, env=git_env(), timeout=30, check=True)
    return dest


def push(repo: Path, bare: Path, *refspecs: str) -> None:
    git(repo, 'push', '--quiet', '--force', str(bare), *(refspecs or ('--all',)))


def repo_from_dir(source: Path, dest: Path, branch: str = 'main',
                  message: str = 'initial import') -> tuple[Path, str]:
    """Copy a directory (e.g. one of /work/shared/flux-examples) into a new repo and commit it."""
    shutil.copytree(source, dest)
    # The shared examples are read-only; the copy must be writable for git and for cleanup.
    os.chmod(dest, 0o755)
    for root, dirs, files in os.walk(dest):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
    init_repo(dest, branch)
    return dest, commit(dest, message)
