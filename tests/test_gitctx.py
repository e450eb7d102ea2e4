from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from flux_monitor_hook import exit_codes
from flux_monitor_hook import gitctx
from flux_monitor_hook.errors import UserError
from tests import gitrepos
from tests.gitrepos import commit
from tests.gitrepos import git

SECRET = 's3cret-Token'
MISSING_SHA = '0123456789abcdef0123456789abcdef01234567'


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch):
    """gitctx uses the caller's environment: keep the machine's git config out of it."""
    for key, value in gitrepos.ISOLATION.items():
        monkeypatch.setenv(key, value)


@dataclass(frozen=True)
class History:
    """A remote, a clone, and commits: base <- first <- second on main, plus an orphan."""

    remote: Path
    work: Path
    base: str
    first: str
    second: str
    orphan: str
    annotated_tag: str


@pytest.fixture(scope='module')
def history(tmp_path_factory) -> History:
    # Read-only for the tests that use it: building it once keeps the module fast.
    tmp = tmp_path_factory.mktemp('history')
    remote, work = gitrepos.remote_and_clone(tmp)
    base = git(work, 'rev-parse', 'HEAD')
    first = commit(work, 'first', {'apps/a.yaml': 'a\n'})
    second = commit(work, 'second', {'apps/b.yaml': 'b\n'})
    gitrepos.tag(work, 'v1-light', first)
    gitrepos.tag(work, 'v1', first, message='release v1')
    git(work, 'checkout', '--quiet', '--orphan', 'other')
    orphan = commit(work, 'unrelated', {'other.txt': 'x\n'})
    git(work, 'checkout', '--quiet', 'main')
    gitrepos.push(work, 'main', 'other', 'v1', 'v1-light')
    return History(remote, work, base, first, second, orphan, git(work, 'rev-parse', 'v1'))


def _user_error(excinfo: pytest.ExceptionInfo[UserError]) -> str:
    assert excinfo.value.exit_code == exit_codes.USAGE
    return str(excinfo.value)


# repository and branches


def test_repo_root_from_subdirectory(history):
    # git reports real paths (macOS's /var is /private/var).
    assert gitctx.repo_root(history.work / 'apps') == history.work.resolve()
    assert gitctx.git_dir(history.work) == history.work.resolve() / '.git'


def test_repo_root_defaults_to_current_directory(history, monkeypatch):
    monkeypatch.chdir(history.work / 'apps')
    assert gitctx.repo_root() == history.work.resolve()


def test_not_a_repository(tmp_path):
    plain = tmp_path / 'plain'
    plain.mkdir()
    with pytest.raises(UserError) as excinfo:
        gitctx.repo_root(plain)
    message = _user_error(excinfo)
    assert message == (
        f'not a git repository: {plain}; run flux-monitor inside your GitOps repository or '
        f'pass --repo-path'
    )


def test_inside_git_directory_or_bare_repository(history):
    for where in (history.work / '.git', history.remote):
        with pytest.raises(UserError, match='not inside a git work tree'):
            gitctx.repo_root(where)


def test_linked_worktree(history, tmp_path):
    linked = tmp_path / 'linked'
    git(history.work, 'worktree', 'add', '--quiet', '--detach', str(linked), history.first)
    try:
        assert gitctx.repo_root(linked / 'apps') == linked.resolve()
        assert gitctx.git_dir(linked).parent == history.work.resolve() / '.git' / 'worktrees'
        assert gitctx.resolve_commit(linked, 'HEAD') == history.first
        assert gitctx.current_branch(linked) is None
    finally:
        git(history.work, 'worktree', 'remove', '--force', str(linked))


def test_hook_environment_does_not_redirect_git(history, tmp_path, monkeypatch):
    # git sets these for the hooks it runs; `-C root` must still win.
    elsewhere = gitrepos.init(tmp_path / 'elsewhere')
    commit(elsewhere, 'elsewhere')
    monkeypatch.setenv('GIT_DIR', str(elsewhere / '.git'))
    monkeypatch.setenv('GIT_WORK_TREE', str(elsewhere))
    monkeypatch.setenv('GIT_INDEX_FILE', str(tmp_path / 'no-such-index'))
    assert gitctx.repo_root(history.work / 'apps') == history.work.resolve()
    assert gitctx.resolve_commit(history.work, 'HEAD') == history.second
    with gitctx.TreeReader(history.work, 'HEAD') as reader:
        assert reader.read('apps/b.yaml') == b'b\n'


def test_current_branch_and_upstream(tmp_path):
    _, work = gitrepos.remote_and_clone(tmp_path)
    assert gitctx.current_branch(work) == 'main'
    assert gitctx.upstream(work, 'main') == ('origin', 'main')
    git(work, 'checkout', '--quiet', '-b', 'feature/x.y')
    assert gitctx.current_branch(work) == 'feature/x.y'
    assert gitctx.upstream(work, 'feature/x.y') is None
    git(work, 'branch', '--quiet', '--set-upstream-to=main')  # tracks a local branch
    assert gitctx.upstream(work, 'feature/x.y') is None
    git(work, 'branch', '--quiet', '--set-upstream-to=origin/main')
    assert gitctx.upstream(work, 'refs/heads/feature/x.y') == ('origin', 'main')
    git(work, 'checkout', '--quiet', '--detach')
    assert gitctx.current_branch(work) is None


def test_default_remote(tmp_path):
    remote, work = gitrepos.remote_and_clone(tmp_path)
    assert gitctx.remotes(work) == ['origin']
    assert gitctx.default_remote(work, 'main') == 'origin'
    assert gitctx.default_remote(work, None) == 'origin'
    git(work, 'remote', 'add', 'fleet', remote.as_uri())
    git(work, 'fetch', '--quiet', 'fleet')
    git(work, 'checkout', '--quiet', '-b', 'deploy', '--track', 'fleet/main')
    assert gitctx.default_remote(work, 'deploy') == 'fleet'  # the upstream's remote wins
    assert gitctx.default_remote(work, 'main') == 'origin'
    git(work, 'remote', 'rename', 'origin', 'github')
    assert gitctx.default_remote(work, None) is None  # two remotes, neither is origin
    git(work, 'remote', 'remove', 'github')
    assert gitctx.default_remote(work, None) == 'fleet'  # the only one
    git(work, 'remote', 'remove', 'fleet')
    assert gitctx.default_remote(work, 'deploy') is None


def test_remote_url(tmp_path):
    remote, work = gitrepos.remote_and_clone(tmp_path)
    assert gitctx.remote_url(work, 'origin') == remote.as_uri()
    git(work, 'remote', 'add', 'fleet', 'git@github.com:org/fleet.git')
    git(work, 'config', 'url.https://github.com/.insteadOf', 'git@github.com:')
    assert gitctx.remote_url(work, 'fleet') == 'https://github.com/org/fleet.git'


def test_unknown_remote_names_the_existing_ones(history):
    with pytest.raises(UserError) as excinfo:
        gitctx.remote_url(history.work, 'upstream')
    assert _user_error(excinfo) == (
        "unknown remote 'upstream': this repository's remotes are origin; "
        "pass --remote NAME with one of them"
    )


def test_unknown_remote_given_as_url_is_redacted(history):
    with pytest.raises(UserError) as excinfo:
        gitctx.remote_url(history.work, f'https://x:{SECRET}@example.invalid/r.git')
    assert SECRET not in _user_error(excinfo)


def test_no_remote(tmp_path):
    repo = gitrepos.init(tmp_path / 'repo')
    commit(repo)
    assert gitctx.remotes(repo) == []
    assert gitctx.default_remote(repo, 'main') is None
    with pytest.raises(UserError) as excinfo:
        gitctx.remote_url(repo, 'origin')
    assert _user_error(excinfo) == (
        'this repository has no remote; add the one Flux fetches from: git remote add origin URL'
    )


@pytest.mark.parametrize('bad', ('-v', '--output=x', ''))
def test_remote_names_cannot_be_options(history, bad):
    with pytest.raises(UserError, match='invalid remote name'):
        gitctx.remote_url(history.work, bad)
    with pytest.raises(UserError, match='invalid remote name'):
        gitctx.remote_tracking_commit(history.work, bad, 'main')
    assert not gitctx.fetch(history.work, bad)


# revisions


def test_resolve_commit(history):
    work = history.work
    assert gitctx.resolve_commit(work, 'main') == history.second
    assert gitctx.resolve_commit(work, 'HEAD') == history.second
    assert gitctx.resolve_commit(work, 'HEAD~1') == history.first
    assert gitctx.resolve_commit(work, 'main^^') == history.base
    assert gitctx.resolve_commit(work, 'origin/main') == history.second
    assert gitctx.resolve_commit(work, history.first) == history.first
    assert gitctx.resolve_commit(work, history.first[:10]) == history.first
    assert gitctx.resolve_commit(work, history.first.upper()) == history.first
    assert gitctx.resolve_commit(work, 'v1-light') == history.first
    # An annotated tag is an object of its own; the commit it points to is what Flux reports.
    assert history.annotated_tag != history.first
    assert gitctx.resolve_commit(work, 'v1') == history.first
    assert gitctx.resolve_commit(work, 'refs/tags/v1') == history.first


@pytest.mark.parametrize('rev', ('nope', 'HEAD~99', MISSING_SHA, 'v1:apps'))
def test_unknown_revision(history, rev):
    with pytest.raises(UserError) as excinfo:
        gitctx.resolve_commit(history.work, rev)
    message = _user_error(excinfo)
    assert message.startswith(
        f"unknown revision '{rev}': not a commit, branch or tag in {history.work}; ")
    assert 'shallow' not in message


def test_unknown_revision_in_shallow_clone_mentions_unshallow(history, tmp_path):
    shallow = gitrepos.clone(history.remote, tmp_path / 'shallow', '--depth', '1')
    with pytest.raises(UserError, match='git fetch --unshallow'):
        gitctx.resolve_commit(shallow, history.first)


def test_empty_repository(tmp_path):
    empty = gitrepos.init(tmp_path / 'empty')
    assert gitctx.current_branch(empty) == 'main'
    with pytest.raises(UserError) as excinfo:
        gitctx.resolve_commit(empty, 'HEAD')
    assert _user_error(excinfo) == (
        f"unknown revision 'HEAD': the repository {empty} has no commits yet; "
        f"commit and push first"
    )
    assert gitctx.remote_tracking_commit(empty, 'origin', 'main') is None
    assert gitctx.is_ancestor(empty, 'HEAD', 'HEAD') is None


def test_options_are_refused_before_running_git(history, tmp_path):
    target = tmp_path / 'written'
    evil = f'--output={target}'
    calls = [
        lambda: gitctx.resolve_commit(history.work, evil),
        lambda: gitctx.ref_kind(history.work, evil),
        lambda: gitctx.is_ancestor(history.work, evil, 'HEAD'),
        lambda: gitctx.is_ancestor(history.work, 'HEAD', evil),
        lambda: gitctx.changed_files(history.work, evil, 'HEAD'),
        lambda: gitctx.changed_files(history.work, None, evil),
        lambda: gitctx.list_tree(history.work, evil),
        lambda: gitctx.read_blob(history.work, evil, 'README.md'),
        lambda: gitctx.commit_time(history.work, evil),
        lambda: gitctx.remote_tracking_commit(history.work, 'origin', evil),
    ]
    for call in calls:
        with pytest.raises(UserError) as excinfo:
            call()
        assert "start with \"-\"" in _user_error(excinfo)
    assert not gitctx.fetch(history.work, 'origin', [evil])
    assert not gitctx.has_commit(history.work, evil)
    assert not target.exists()


def test_ref_kind(history, tmp_path):
    work = history.work
    assert gitctx.ref_kind(work, 'main') == 'branch'
    assert gitctx.ref_kind(work, 'HEAD') == 'branch'
    assert gitctx.ref_kind(work, 'origin/main') == 'branch'
    assert gitctx.ref_kind(work, 'v1') == 'tag'
    assert gitctx.ref_kind(work, 'v1-light') == 'tag'
    assert gitctx.ref_kind(work, 'refs/tags/v1') == 'tag'
    assert gitctx.ref_kind(work, history.first) == 'commit'
    assert gitctx.ref_kind(work, history.first[:8]) == 'commit'
    assert gitctx.ref_kind(work, 'HEAD~1') == 'commit'
    assert gitctx.ref_kind(work, 'v1^{}') == 'commit'
    assert gitctx.ref_name(work, 'v1') == 'refs/tags/v1'
    assert gitctx.ref_name(work, 'main') == 'refs/heads/main'
    assert gitctx.ref_name(work, 'HEAD~1') is None
    assert gitctx.is_tag(work, 'v1-light')
    assert not gitctx.is_tag(work, 'main')
    with pytest.raises(UserError, match="unknown revision 'v9'"):
        gitctx.ref_kind(work, 'v9')


def test_ref_kind_detached_and_ambiguous(tmp_path):
    _, work = gitrepos.remote_and_clone(tmp_path)
    git(work, 'tag', 'release')
    git(work, 'branch', 'release')
    # git warns and resolves an ambiguous name to the tag; so do we.
    assert gitctx.ref_name(work, 'release') == 'refs/tags/release'
    assert gitctx.ref_kind(work, 'release') == 'tag'
    git(work, 'checkout', '--quiet', '--detach')
    assert gitctx.ref_kind(work, 'HEAD') == 'commit'
    assert gitctx.ref_name(work, 'HEAD') is None


def test_remote_tracking_commit(tmp_path):
    _, work = gitrepos.remote_and_clone(tmp_path)
    pushed = git(work, 'rev-parse', 'HEAD')
    commit(work, 'not pushed yet')
    assert gitctx.remote_tracking_commit(work, 'origin', 'main') == pushed
    assert gitctx.remote_tracking_commit(work, 'origin', 'refs/heads/main') == pushed
    assert gitctx.remote_tracking_commit(work, 'origin', 'nope') is None
    assert gitctx.remote_tracking_commit(work, 'fleet', 'main') is None
    # Exact ref names only: revision syntax must not walk to another commit.
    assert gitctx.remote_tracking_commit(work, 'origin', 'main~1') is None
    assert gitctx.remote_tracking_commit(work, 'origin', 'main^{tree}') is None
    gitrepos.push(work)
    assert gitctx.remote_tracking_commit(work, 'origin', 'main') == git(work, 'rev-parse', 'HEAD')


# ancestry and fetching


def test_is_ancestor(history):
    work = history.work
    assert gitctx.is_ancestor(work, history.base, history.second) is True
    assert gitctx.is_ancestor(work, history.first, 'main') is True
    assert gitctx.is_ancestor(work, history.second, history.second) is True
    assert gitctx.is_ancestor(work, history.second, history.first) is False
    assert gitctx.is_ancestor(work, history.orphan, history.second) is False
    assert gitctx.is_ancestor(work, history.second, history.orphan) is False
    assert gitctx.is_ancestor(work, MISSING_SHA, history.second) is None
    assert gitctx.is_ancestor(work, history.second, MISSING_SHA) is None
    assert gitctx.has_commit(work, history.first)
    assert gitctx.has_commit(work, history.first[:7])
    assert not gitctx.has_commit(work, MISSING_SHA)
    assert not gitctx.has_commit(work, 'main')  # a SHA is expected, not a ref
    assert not gitctx.is_shallow(work)


def test_shallow_clone_cannot_tell(history, tmp_path):
    # Tags would bring their own depth-2 history; without them main stops at `first`.
    shallow = gitrepos.clone(history.remote, tmp_path / 'shallow', '--depth', '2',
                             '--no-single-branch', '--no-tags')
    assert gitctx.is_shallow(shallow)
    assert gitctx.has_commit(shallow, history.first)
    assert not gitctx.has_commit(shallow, history.base)
    # Known for what the clone has...
    assert gitctx.is_ancestor(shallow, history.first, history.second) is True
    assert gitctx.is_ancestor(shallow, history.second, history.first) is None
    # ...unknown beyond the cut: history.base is missing.
    assert gitctx.is_ancestor(shallow, history.base, history.second) is None
    # The orphan branch's history is complete here, so "not an ancestor" is certain.
    assert gitctx.is_ancestor(shallow, history.second, history.orphan) is False
    # `first` is the cut: its parent is missing, so it could be behind the orphan for all we know.
    assert gitctx.is_ancestor(shallow, history.orphan, history.first) is None


def test_fetch_brings_an_unknown_commit(history, tmp_path):
    _, work = gitrepos.remote_and_clone(tmp_path)
    other = gitrepos.clone(tmp_path / 'remote.git', tmp_path / 'other')
    pushed = commit(other, 'from another clone', {'apps/c.yaml': 'c\n'})
    gitrepos.push(other)
    old = git(work, 'rev-parse', 'HEAD')
    assert not gitctx.has_commit(work, pushed)
    assert gitctx.is_ancestor(work, old, pushed) is None
    result = gitctx.fetch(work, 'origin', [pushed])
    assert result == gitctx.FetchResult(True)
    assert gitctx.is_ancestor(work, old, pushed) is True
    assert gitctx.remote_tracking_commit(work, 'origin', 'main') == old  # no ref was updated
    assert not (work / '.git' / 'FETCH_HEAD').exists()
    assert gitctx.fetch(work, 'origin')  # the configured refspecs
    assert gitctx.remote_tracking_commit(work, 'origin', 'main') == pushed


def test_fetch_deepens_a_shallow_clone(history, tmp_path):
    shallow = gitrepos.clone(history.remote, tmp_path / 'shallow', '--depth', '1')
    assert gitctx.is_ancestor(shallow, history.base, history.second) is None
    assert gitctx.fetch(shallow, 'origin', ['--unshallow']).ok is False  # options are refused
    git(shallow, 'fetch', '--quiet', '--unshallow')
    assert gitctx.is_ancestor(shallow, history.base, history.second) is True


def test_fetch_failure_is_redacted(tmp_path):
    repo = gitrepos.init(tmp_path / 'repo')
    commit(repo)
    # Port 9 (discard) is closed on test machines: the connection is refused at once.
    git(repo, 'remote', 'add', 'origin', f'http://deploy:{SECRET}@127.0.0.1:9/fleet.git')
    result = gitctx.fetch(repo, 'origin', timeout=10)
    assert not result
    assert result.error
    assert SECRET not in result.error
    assert '127.0.0.1' in result.error


def test_fetch_timeout_kills_the_transport(tmp_path, monkeypatch):
    repo = gitrepos.init(tmp_path / 'repo')
    commit(repo)
    git(repo, 'remote', 'add', 'origin', 'ssh://git@example.invalid/fleet.git')
    # The "ssh" a shell runs keeps git's stderr open: a plain kill of git would leave it hanging.
    monkeypatch.setenv('GIT_SSH_COMMAND', 'sleep 30; true')
    started = time.monotonic()
    result = gitctx.fetch(repo, 'origin', timeout=0.5)
    assert time.monotonic() - started < 5
    assert result == gitctx.FetchResult(False, 'git fetch origin timed out after 0.5 s')


# files


def test_changed_files(tmp_path):
    repo = gitrepos.init(tmp_path / 'repo')
    before = commit(repo, 'before', {
        'apps/a.yaml': 'a\n', 'apps/b.yaml': 'b\n', 'old-name.yaml': 'moved\n', 'same.yaml': 's\n',
    })
    after = commit(repo, 'after', {
        'apps/a.yaml': 'changed\n',
        'apps/b.yaml': None,
        'apps/new dir/ü.yaml': 'new\n',
        'old-name.yaml': None,
        'new-name.yaml': 'moved\n',
    })
    assert gitctx.changed_files(repo, before, after) == [
        'apps/a.yaml', 'apps/b.yaml', 'apps/new dir/ü.yaml', 'new-name.yaml', 'old-name.yaml',
    ]
    assert gitctx.changed_files(repo, after, before) == gitctx.changed_files(repo, before, after)
    assert gitctx.changed_files(repo, after, after) == []
    assert gitctx.changed_files(repo, None, after) == [
        'apps/a.yaml', 'apps/new dir/ü.yaml', 'new-name.yaml', 'same.yaml',
    ]
    assert gitctx.changed_files(repo, 'HEAD~1', 'HEAD') == gitctx.changed_files(repo, before, after)
    # pre-push says "no remote commit yet" (a new branch) with zeros
    assert gitctx.changed_files(repo, '0' * 40, after) == gitctx.changed_files(repo, None, after)
    with pytest.raises(UserError, match="unknown revision 'nope'"):
        gitctx.changed_files(repo, 'nope', after)


def test_changed_files_ignore_porcelain_config(tmp_path):
    repo = gitrepos.init(tmp_path / 'repo')
    before = commit(repo, 'before', {'a/x.yaml': 'x\n' * 20})
    after = commit(repo, 'after', {'a/x.yaml': None, 'b/x.yaml': 'x\n' * 20})
    git(repo, 'config', 'diff.renames', 'copies')
    git(repo, 'config', 'diff.relative', 'true')
    git(repo, 'config', 'core.quotePath', 'true')
    assert gitctx.changed_files(repo, before, after) == ['a/x.yaml', 'b/x.yaml']


def test_tree_reader(tmp_path):
    repo = gitrepos.init(tmp_path / 'repo')
    old = commit(repo, 'old', {'clusters/prod/kustomization.yaml': 'old\n'})
    sha = commit(repo, 'files', {
        'clusters/prod/kustomization.yaml': 'resources: [apps.yaml]\n',
        'clusters/prod/apps.yaml': 'kind: Kustomization\n',
        'clusters/staging/kustomization.yaml': 'resources: []\n',
        'clusters/prod-eu/kustomization.yaml': '',
        'name\nwith newline.yaml': 'odd\n',
    })
    (repo / 'clusters/prod/kustomization.yaml').write_text('uncommitted\n')
    with gitctx.TreeReader(repo, 'main') as reader:
        assert reader.sha == sha
        assert reader.read('clusters/prod/kustomization.yaml') == b'resources: [apps.yaml]\n'
        assert reader.read('clusters/staging/kustomization.yaml') == b'resources: []\n'
        assert reader.read('clusters/prod-eu/kustomization.yaml') == b''
        assert reader.read('clusters/missing/kustomization.yaml') is None
        assert reader.read('clusters/prod') is None  # a directory
        assert reader.read('') is None
        assert reader.read('/clusters/./staging/../prod/apps.yaml') == b'kind: Kustomization\n'
        assert reader.read('../outside.yaml') is None
        assert reader.read('name\nwith newline.yaml') == b'odd\n'
        assert reader.read('clusters/prod/apps.yaml') == b'kind: Kustomization\n'
        assert reader.files('clusters/prod') == [
            'clusters/prod/apps.yaml', 'clusters/prod/kustomization.yaml',
        ]
        assert reader.files('clusters/prod/') == reader.files('clusters/prod')
        assert reader.files('clusters/prod/apps.yaml') == []  # a file, not a directory
        assert reader.files('nope') == []
        assert len(reader.files()) == 5
        proc = reader._proc
    assert proc is not None and proc.returncode == 0  # closed with the context
    assert gitctx.read_blob(repo, old, 'clusters/prod/kustomization.yaml') == b'old\n'
    assert gitctx.read_blob(repo, 'HEAD', 'nope') is None
    assert gitctx.list_tree(repo, 'HEAD~1') == ['clusters/prod/kustomization.yaml']
    assert gitctx.list_tree(repo, 'HEAD', 'clusters/staging') == [
        'clusters/staging/kustomization.yaml',
    ]


def test_tree_reader_unknown_commit(history):
    reader = gitctx.TreeReader(history.work, MISSING_SHA)
    with pytest.raises(UserError, match=f"unknown revision '{MISSING_SHA}'"):
        reader.read('README.md')
    reader.close()
    with pytest.raises(UserError, match="unknown revision 'nope'"):
        gitctx.list_tree(history.work, 'nope')


def test_commit_time(tmp_path):
    repo = gitrepos.init(tmp_path / 'repo')
    sha = commit(repo, 'dated', date='1700000000 +0200')
    gitrepos.tag(repo, 'dated', message='annotated')
    assert gitctx.commit_time(repo, sha) == 1700000000.0
    assert gitctx.commit_time(repo, 'dated') == 1700000000.0
    with pytest.raises(UserError, match="unknown revision 'nope'"):
        gitctx.commit_time(repo, 'nope')


def test_short():
    assert gitctx.short('0123456789abcdef0123456789abcdef01234567') == '0123456'


def test_transport_errors_are_redacted(tmp_path, monkeypatch):
    repo = gitrepos.init(tmp_path / 'repo')
    commit(repo)
    git(repo, 'remote', 'add', 'origin', 'ssh://git@example.invalid/fleet.git')
    # git anonymizes the URLs it prints itself, but not what a transport or helper says.
    monkeypatch.setenv(
        'GIT_SSH_COMMAND',
        f'echo "warning: retrying" >&2; echo "fatal: no access to https://deploy:{SECRET}@'
        f'example.invalid/fleet.git" >&2; false',
    )
    result = gitctx.fetch(repo, 'origin')
    assert result == gitctx.FetchResult(
        False, 'fatal: no access to https://deploy:***@example.invalid/fleet.git')


def test_revision_that_is_a_url_is_redacted(history):
    with pytest.raises(UserError) as excinfo:
        gitctx.changed_files(history.work, f'https://deploy:{SECRET}@example.invalid/x', 'HEAD')
    assert "unknown revision 'https://deploy:***@example.invalid/x'" in _user_error(excinfo)


def test_other_git_failures_are_git_errors(tmp_path):
    repo = gitrepos.init(tmp_path / 'repo')
    commit(repo)
    with (repo / '.git' / 'config').open('a') as config:
        config.write('[broken\n')
    with pytest.raises(gitctx.GitError) as excinfo:
        gitctx.default_remote(repo, 'main')
    assert str(excinfo.value).startswith('git config failed: fatal: bad config line')
    assert excinfo.value.exit_code == exit_codes.USAGE


def test_no_git_subprocess_is_left_behind(history):
    with gitctx.TreeReader(history.work, 'HEAD') as reader:
        reader.read('README.md')
        proc = reader._proc
        assert isinstance(proc, subprocess.Popen)
        assert proc.poll() is None
    assert proc.poll() == 0
