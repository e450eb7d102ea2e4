"""gitsource against real git repositories (bare remotes, as a git server holds them)."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from flux_monitor_hook.sandbox import gitsource
from flux_monitor_hook.sandbox.gitsource import GitSourceError
from flux_monitor_hook.sandbox.gitsource import parse_constraint
from flux_monitor_hook.sandbox.gitsource import parse_tag_version
from tests.sandbox import gitutil

EXAMPLES = Path('/work/shared/flux-examples')
CHECKOUT = 'failed to checkout and determine revision: '


@dataclass(frozen=True)
class Remote:
    bare: Path
    c1: str
    c2: str
    c3: str
    feature: str


@pytest.fixture(scope='module')
def remote(tmp_path_factory: pytest.TempPathFactory) -> Remote:
    """main: c1 (v0.1.0 light, v1.0.0 annotated) -> c2 (v1.2.0, v1.10.0) -> c3 (v2.0.0-rc.1);
    master at c1; feature/x branches off c1."""
    base = tmp_path_factory.mktemp('remote')
    work = gitutil.init_repo(base / 'work')
    c1 = gitutil.commit(work, 'first commit\n\nbody text', {'app/config.yaml': 'a: 1\n'},
                        date='2024-01-01T00:00:00Z')
    gitutil.tag(work, 'v0.1.0')
    gitutil.tag(work, 'v1.0.0', message='release 1.0.0')
    gitutil.git(work, 'branch', 'master')
    c2 = gitutil.commit(work, 'second', {'app/config.yaml': 'a: 2\n'}, date='2024-01-02T00:00:00Z')
    gitutil.tag(work, 'v1.2.0', message='release 1.2.0')
    gitutil.tag(work, 'v1.10.0')
    gitutil.tag(work, 'not-a-version')
    c3 = gitutil.commit(work, 'third', {'app/new.yaml': 'b: 1\n'}, date='2024-01-03T00:00:00Z')
    gitutil.tag(work, 'v2.0.0-rc.1')
    gitutil.git(work, 'checkout', '--quiet', '-b', 'feature/x', c1)
    feature = gitutil.commit(work, 'feature work', {'feature.txt': 'x'},
                             date='2024-01-04T00:00:00Z')
    gitutil.git(work, 'checkout', '--quiet', 'main')
    bare = gitutil.bare_clone(work, base / 'remote.git')
    return Remote(bare, c1, c2, c3, feature)


def _resolve(remote: Remote, ref: dict | None) -> gitsource.ResolvedRef:
    return gitsource.resolve_ref(str(remote.bare), ref)


def _error(repo: str, ref: dict | None, **kwargs: str) -> GitSourceError:
    with pytest.raises(GitSourceError) as caught:
        gitsource.resolve_ref(repo, ref, **kwargs)
    return caught.value


# -- revisions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(('ref', 'commit', 'revision'), [
    (None, 'c1', 'master@sha1:{c1}'),
    ({}, 'c1', 'master@sha1:{c1}'),
    ({'branch': 'main'}, 'c3', 'main@sha1:{c3}'),
    ({'branch': 'feature/x'}, 'feature', 'feature/x@sha1:{feature}'),
    ({'tag': 'v0.1.0'}, 'c1', 'v0.1.0@sha1:{c1}'),
    ({'tag': 'v1.0.0'}, 'c1', 'v1.0.0@sha1:{c1}'),
    ({'semver': '>=1.0.0'}, 'c2', 'v1.10.0@sha1:{c2}'),
    ({'name': 'refs/heads/main'}, 'c3', 'refs/heads/main@sha1:{c3}'),
    ({'name': 'refs/tags/v1.2.0'}, 'c2', 'refs/tags/v1.2.0@sha1:{c2}'),
    ({'name': 'refs/tags/v1.2.0^{}'}, 'c2', 'refs/tags/v1.2.0^{{}}@sha1:{c2}'),
    ({'commit': 'c1'}, 'c1', 'sha1:{c1}'),
    ({'branch': 'main', 'commit': 'c2'}, 'c2', 'main@sha1:{c2}'),
    ({'name': 'refs/heads/main', 'commit': 'c2'}, 'c2', 'refs/heads/main@sha1:{c2}'),
], ids=lambda value: str(value))
def test_every_ref_form_gives_source_controllers_revision(remote: Remote, ref: dict | None,
                                                          commit: str, revision: str) -> None:
    shas = {'c1': remote.c1, 'c2': remote.c2, 'c3': remote.c3, 'feature': remote.feature}
    if ref and 'commit' in ref:
        ref = {**ref, 'commit': shas[ref['commit']]}
    resolved = _resolve(remote, ref)
    assert resolved.commit == shas[commit]
    assert resolved.revision == revision.format(**shas)


def test_annotated_tags_are_peeled_to_the_commit(remote: Remote) -> None:
    tag_object = gitutil.git(remote.bare, 'rev-parse', 'refs/tags/v1.0.0')
    assert tag_object != remote.c1, 'v1.0.0 must be an annotated tag for this test'
    resolved = _resolve(remote, {'tag': 'v1.0.0'})
    assert resolved.commit == remote.c1
    assert resolved.reference == 'refs/tags/v1.0.0'
    assert _resolve(remote, {'tag': 'v0.1.0'}).commit == remote.c1


@pytest.mark.parametrize(('ref', 'winner'), [
    ({'branch': 'main', 'tag': 'v0.1.0'}, 'v0.1.0@sha1:{c1}'),
    ({'tag': 'v0.1.0', 'semver': '1.2.x'}, 'v1.2.0@sha1:{c2}'),
    ({'semver': '1.2.x', 'name': 'refs/heads/main'}, 'refs/heads/main@sha1:{c3}'),
    ({'branch': 'main', 'tag': 'v1.0.0', 'semver': '*', 'name': 'refs/heads/main',
      'commit': 'c2'}, 'refs/heads/main@sha1:{c2}'),
    ({'branch': 'main', 'tag': 'v1.0.0', 'semver': '*', 'commit': 'c2'}, 'main@sha1:{c2}'),
], ids=lambda value: str(value))
def test_ref_precedence_branch_tag_semver_name_commit(remote: Remote, ref: dict,
                                                      winner: str) -> None:
    shas = {'c1': remote.c1, 'c2': remote.c2, 'c3': remote.c3}
    if 'commit' in ref:
        ref = {**ref, 'commit': shas[ref['commit']]}
    assert _resolve(remote, ref).revision == winner.format(**shas)


@pytest.mark.parametrize(('expression', 'tag'), [
    ('>=1.0.0', 'v1.10.0'),
    ('<1.5.0', 'v1.2.0'),
    ('>=1.0.0 <1.5.0', 'v1.2.0'),
    ('>=1.0.0, <1.5.0', 'v1.2.0'),
    ('1.2.x', 'v1.2.0'),
    ('~1.2', 'v1.2.0'),
    ('~1', 'v1.10.0'),
    ('^1.2', 'v1.10.0'),
    ('^0.1', 'v0.1.0'),
    ('*', 'v1.10.0'),
    ('1.0.0 - 1.9.0', 'v1.2.0'),
    ('<0.2.0 || 1.2.x', 'v1.2.0'),
    ('>=2.0.0-0', 'v2.0.0-rc.1'),
    ('v1.0.0', 'v1.0.0'),
])
def test_semver_picks_the_highest_matching_tag(remote: Remote, expression: str, tag: str) -> None:
    resolved = _resolve(remote, {'semver': expression})
    assert resolved.revision.split('@')[0] == tag
    assert resolved.reference == f'refs/tags/{tag}'


@pytest.mark.parametrize(('constraint', 'version', 'ok'), [
    ('>=1.0.0', '2.0.0-rc.1', False),  # prereleases need a prerelease in the constraint
    ('>=1.0.0-0', '2.0.0-rc.1', True),
    ('^0.2.3', '0.2.9', True),
    ('^0.2.3', '0.3.0', False),
    ('^0.0.3', '0.0.4', False),
    ('~1.2.3', '1.2.9', True),
    ('~1.2.3', '1.3.0', False),
    ('>1.x', '1.9.0', False),
    ('>1.x', '2.0.0', True),
    ('<=1.x', '1.99.0', True),
    ('<=1.x', '2.0.0', False),
    ('!=1.2.3', '1.2.4', True),
    ('1.2', '1.2.7', True),
    ('=1.2.3', '1.2.3+build.5', True),
])
def test_semver_constraint_semantics(constraint: str, version: str, ok: bool) -> None:
    parsed = parse_tag_version(version)
    assert parsed is not None
    assert parse_constraint(constraint).check(parsed) is ok


def test_semver_ordering_and_tag_parsing() -> None:
    versions = [parse_tag_version(t) for t in ('v1.10.0', '1.2.0', 'v1.2.0-rc.2', 'v1.2.0-rc.10',
                                                 'v1.2.0-alpha')]
    assert all(versions)
    ordered = sorted(v for v in versions if v)
    assert [v.original for v in ordered] == ['v1.2.0-alpha', 'v1.2.0-rc.2', 'v1.2.0-rc.10',
                                             '1.2.0', 'v1.10.0']
    assert parse_tag_version('v1.2') is None, 'fluxcd/pkg requires three dotted parts'
    assert parse_tag_version('release') is None


# -- failures --------------------------------------------------------------------------------------


def test_missing_branch_and_tag_use_go_gits_wording(remote: Remote) -> None:
    url = str(remote.bare)
    branch = _error(url, {'branch': 'nope'})
    assert branch.reason == 'GitOperationFailed'
    assert branch.message == (f"{CHECKOUT}unable to clone '{url}': "
                              'couldn\'t find remote ref "refs/heads/nope"')
    tag = _error(url, {'tag': 'v9.9.9'})
    assert tag.message == f'{CHECKOUT}unable to clone \'{url}\': couldn\'t find remote ref ' \
                          '"refs/tags/v9.9.9"'


def test_no_ref_means_master(tmp_path: Path) -> None:
    repo = gitutil.init_repo(tmp_path / 'main-only')
    gitutil.commit(repo, 'only main')
    error = _error(str(repo), None)
    assert error.message == (f"{CHECKOUT}unable to clone '{repo}': "
                             'couldn\'t find remote ref "refs/heads/master"')


def test_semver_failures(remote: Remote) -> None:
    none = _error(str(remote.bare), {'semver': '>=5.0.0'})
    assert (none.reason, none.message) == ('GitOperationFailed',
                                           f'{CHECKOUT}no match found for semver: >=5.0.0')
    bad = _error(str(remote.bare), {'semver': 'not a range'})
    assert bad.message == f'{CHECKOUT}semver parse error: improper constraint: not a range'


def test_missing_commit_name_and_commit_off_branch(remote: Remote) -> None:
    url = str(remote.bare)
    missing = 'f' * 40
    assert _error(url, {'commit': missing}).message == \
        f"{CHECKOUT}unable to resolve commit object for '{missing}': object not found"
    short = remote.c1[:10]
    assert 'object not found' in _error(url, {'commit': short}).message
    # With a branch only that branch's history is fetched.
    off_branch = _error(url, {'branch': 'main', 'commit': remote.feature})
    assert off_branch.message.endswith('object not found')
    assert _error(url, {'branch': 'gone', 'commit': remote.c1}).message.endswith(
        'couldn\'t find remote ref "refs/heads/gone"')
    assert _error(url, {'name': 'refs/heads/gone'}).message == \
        f"{CHECKOUT}unable to resolve ref 'refs/heads/gone' to a specific commit"


def test_not_a_repository(tmp_path: Path, remote: Remote) -> None:
    missing = str(tmp_path / 'absent')
    error = _error(missing, {'branch': 'main'})
    assert (error.reason, error.message) == (
        'GitOperationFailed',
        f"{CHECKOUT}unable to clone: repository not found: git repository: '{missing}'")
    plain = tmp_path / 'plain'
    plain.mkdir()
    assert 'repository not found' in _error(str(plain), {'tag': 'v1'}).message
    # A directory inside another repository is not that repository.
    inside = remote.bare / 'refs'
    assert 'repository not found' in _error(str(inside), {'branch': 'main'}).message


def test_empty_repository(tmp_path: Path) -> None:
    bare = tmp_path / 'empty.git'
    gitutil.git(tmp_path, 'init', '--quiet', '--bare', str(bare))
    empty = _error(str(bare), {'branch': 'main'})
    assert (empty.reason, empty.message) == ('EmptyGitRepository', 'git repository is empty')
    assert _error(str(bare), None).reason == 'EmptyGitRepository'
    tagged = _error(str(bare), {'tag': 'v1.0.0'})
    assert (tagged.reason, tagged.message) == (
        'GitOperationFailed',
        f"{CHECKOUT}unable to clone: remote repository is empty: git repository: '{bare}'")


# -- URLs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(('url', 'path'), [
    ('/srv/git/fleet.git', '/srv/git/fleet.git'),
    ('relative/repo', 'relative/repo'),
    ('file:///srv/git/fleet.git', '/srv/git/fleet.git'),
    ('file://localhost/srv/git/with%20space', '/srv/git/with space'),
    ('file://otherhost/srv/git', None),
    ('https://github.com/org/fleet', None),
    ('http://gitea.local/org/fleet.git', None),
    ('ssh://git@github.com/org/fleet', None),
    ('git@github.com:org/fleet.git', None),
    ('', None),
])
def test_local_path_for_url(url: str, path: str | None) -> None:
    assert gitsource.local_path_for_url(url) == path


@pytest.mark.parametrize(('url', 'shown'), [
    ('https://user:token@github.com/org/fleet', 'https://user:***@github.com/org/fleet'),
    ('https://ghp_secret@github.com/org/fleet', 'https://***@github.com/org/fleet'),
    ('ssh://git@github.com/org/fleet', 'ssh://git@github.com/org/fleet'),
    ('ssh://git:pw@github.com:2222/org/fleet', 'ssh://git:***@github.com:2222/org/fleet'),
    ('https://github.com/org/fleet', 'https://github.com/org/fleet'),
    ('/srv/git/fleet.git', '/srv/git/fleet.git'),
])
def test_redact_url(url: str, shown: str) -> None:
    assert gitsource.redact_url(url) == shown


def test_credentials_never_reach_messages(remote: Remote) -> None:
    url = 'https://admin:hunter2@git.example.com/org/fleet.git'
    unreachable = _error(url, {'branch': 'main'})
    assert 'hunter2' not in unreachable.message
    assert unreachable.message.startswith(
        f"{CHECKOUT}unable to clone 'https://admin:***@git.example.com/org/fleet.git': ")
    mapped = _error(str(remote.bare), {'branch': 'nope'}, url=url)
    assert 'hunter2' not in mapped.message
    assert "'https://admin:***@git.example.com/org/fleet.git'" in mapped.message


def test_file_url_and_display_url(remote: Remote) -> None:
    via_url = gitsource.resolve_ref(f'file://{remote.bare}', {'branch': 'main'})
    assert via_url == _resolve(remote, {'branch': 'main'})
    shown = _error(str(remote.bare), {'branch': 'nope'}, url='https://github.com/org/fleet')
    assert "unable to clone 'https://github.com/org/fleet'" in shown.message


def test_ignores_git_variables_from_the_environment(remote: Remote, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Inside a pre-commit hook GIT_DIR and GIT_INDEX_FILE point at the user's repository.
    other = gitutil.init_repo(tmp_path / 'other')
    gitutil.commit(other, 'unrelated')
    monkeypatch.setenv('GIT_DIR', str(other / '.git'))
    monkeypatch.setenv('GIT_INDEX_FILE', str(other / '.git' / 'index'))
    assert _resolve(remote, {'branch': 'main'}).commit == remote.c3


# -- commits and files -----------------------------------------------------------------------------


def test_commit_subject_is_fluxs_short_message(tmp_path: Path, remote: Remote) -> None:
    assert gitsource.commit_subject(str(remote.bare), remote.c1) == 'first commit'
    repo = gitutil.init_repo(tmp_path / 'long')
    sha = gitutil.commit(repo, 'x' * 60 + '\nsecond line')
    assert gitsource.commit_subject(str(repo), sha) == 'x' * 50 + '...'
    with pytest.raises(GitSourceError):
        gitsource.commit_subject(str(repo), 'f' * 40)


def test_is_ancestor(remote: Remote) -> None:
    bare = str(remote.bare)
    assert gitsource.is_ancestor(bare, remote.c1, remote.c3)
    assert gitsource.is_ancestor(bare, remote.c3, remote.c3)
    assert not gitsource.is_ancestor(bare, remote.c3, remote.c1)
    assert not gitsource.is_ancestor(bare, remote.feature, remote.c3)
    assert not gitsource.is_ancestor(bare, 'f' * 40, remote.c3), 'unknown commits are unrelated'


def test_read_file_at(remote: Remote) -> None:
    bare = str(remote.bare)
    assert gitsource.read_file_at(bare, remote.c1, 'app/config.yaml') == b'a: 1\n'
    assert gitsource.read_file_at(bare, remote.c2, './app/config.yaml') == b'a: 2\n'
    assert gitsource.read_file_at(bare, remote.c1, 'app/new.yaml') is None
    assert gitsource.read_file_at(bare, remote.c1, 'app') is None, 'a directory is not a file'
    assert gitsource.read_file_at(bare, 'f' * 40, 'app/config.yaml') is None


# -- export ----------------------------------------------------------------------------------------


def test_export_tree_materialises_and_caches(remote: Remote, tmp_path: Path) -> None:
    root = tmp_path / 'exports'
    first = gitsource.export_tree(str(remote.bare), remote.c3, root)
    assert sorted(p.relative_to(first).as_posix() for p in first.rglob('*')) == [
        'app', 'app/config.yaml', 'app/new.yaml']
    marker = first / 'app' / 'config.yaml'
    before = marker.stat().st_mtime_ns
    again = gitsource.export_tree(str(remote.bare), remote.c3, root)
    assert again == first and marker.stat().st_mtime_ns == before, 'served from the cache'
    older = gitsource.export_tree(f'file://{remote.bare}', remote.c1, root)
    assert older != first and (older / 'app' / 'config.yaml').read_text() == 'a: 1\n'
    assert not (older / 'app' / 'new.yaml').exists()
    assert not [p for p in root.iterdir() if p.name.startswith('.')], 'no staging leftovers'
    by_branch = gitsource.export_tree(str(remote.bare), 'main', root)
    assert by_branch == first, 'a ref name is resolved to its commit before the cache is used'


def test_export_tree_is_safe_when_threads_race(remote: Remote, tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def export() -> None:
        try:
            results.append(gitsource.export_tree(str(remote.bare), remote.c2, tmp_path / 'x'))
        except BaseException as error:  # reported through the assertion below
            errors.append(error)

    threads = [threading.Thread(target=export) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1
    assert (results[0] / 'app' / 'config.yaml').read_text() == 'a: 2\n'


def test_export_honours_sourceignore_and_flux_defaults(tmp_path: Path) -> None:
    repo, sha = gitutil.repo_from_dir(EXAMPLES / 'flux2-kustomize-helm-example', tmp_path / 'ex')
    gitutil.write_files(repo, {'.github/workflows/ci.yaml': 'on: push\n', 'apps/logo.png': 'png',
                               'apps/base/podinfo/.sops.yaml': 'creation_rules: []\n'})
    os.symlink('release.yaml', repo / 'apps' / 'base' / 'podinfo' / 'link.yaml')
    sha = gitutil.commit(repo, 'more files')
    tree = gitsource.export_tree(str(repo), sha, tmp_path / 'exports')
    names = {p.relative_to(tree).as_posix() for p in tree.rglob('*')}
    # .sourceignore there is "/*" then "!/apps/", "!/clusters/", "!/infrastructure/".
    assert {'apps', 'clusters', 'infrastructure'} <= names
    assert 'apps/base/podinfo/release.yaml' in names
    assert not {'README.md', 'LICENSE', '.sourceignore', '.github'} & names
    assert 'apps/logo.png' not in names and 'apps/base/podinfo/.sops.yaml' not in names
    assert 'apps/base/podinfo/link.yaml' not in names, 'symlinks are not archived'
    custom = gitsource.export_tree(str(repo), sha, tmp_path / 'exports', ignore='apps/production/')
    assert custom != tree
    assert (custom / 'apps' / 'staging').is_dir() and not (custom / 'apps' / 'production').exists()


def test_export_of_unknown_commit_fails(remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(GitSourceError):
        gitsource.export_tree(str(remote.bare), 'f' * 40, tmp_path / 'exports')
    assert not (tmp_path / 'exports' / ('f' * 40)).exists()
