"""Which revision `flux-monitor wait` follows (branch, tag, SHA, the pushed commit), and which sources."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.sandbox import gitutil
from tests.wait import fleet
from tests.wait.conftest import MakeWorld

pytestmark = pytest.mark.timeout(90)

# A remote URL nothing listens on: the sandbox maps it to the bare repository, while git in the user's clone
# cannot fetch from it (connection refused at once). With credentials, to check they never show.
UNREACHABLE = 'http://127.0.0.1:1/org/fleet.git'
WITH_CREDENTIALS = 'http://flux:s3cret-token@127.0.0.1:1/org/fleet.git'


def teammate_pushes(world: fleet.World, files: fleet.Files) -> str:
    """Someone else pushes a commit on top of main: the user's clone does not have it."""
    other = world.root / 'teammate'
    if not other.exists():
        gitutil.git(world.root, 'clone', '--quiet', '--', str(world.bare), str(other))
    gitutil.git(other, 'pull', '--quiet', '--ff-only', str(world.bare), 'main')
    sha = gitutil.commit(other, 'a teammate change', files)
    gitutil.git(other, 'push', '--quiet', str(world.bare), 'HEAD:main')
    return sha


def test_revision_names_a_branch(make_world: MakeWorld) -> None:
    world = make_world()
    sha = world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})
    gitutil.git(world.clone, 'checkout', '--quiet', '-b', 'feature')
    world.commit('work in progress', {'apps/web.yaml': fleet.deployment(image='nginx:1.29')})

    by_branch = world.wait('--revision', 'main', '--timeout', '30s', '--format', 'json')
    on_feature = world.wait('--timeout', '30s', '--format', 'simple')

    assert by_branch.code == 0, by_branch
    assert (by_branch.summary['revision'], by_branch.summary['branch']) == (sha, 'main')
    assert by_branch.resource('GitRepository', 'flux-system')['revision'] == f'main@sha1:{sha}'
    # On an unpushed feature branch nothing follows it: said plainly, and not an error.
    assert on_feature.code == 0, on_feature
    assert 'may not be pushed yet: no origin/feature tracking branch' in on_feature.stdout
    assert 'no Flux source follows' in on_feature.stdout and '(feature)' in on_feature.stdout


def test_an_explicit_sha(make_world: MakeWorld) -> None:
    world = make_world()
    first = world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})
    world.push('web: nginx 1.29', {'apps/web.yaml': fleet.deployment(image='nginx:1.29')})

    run = world.wait('--revision', first, '--timeout', '30s', '--format', 'json')

    assert run.code == 0, run
    assert run.summary['revision'] == first
    assert run.summary['branch'] == 'main'
    # What Flux has is the newer commit, which contains the one asked for.
    assert run.resource('GitRepository', 'flux-system')['revision'] == f'main@sha1:{world.head}'


def test_a_descendant_pushed_by_someone_else_counts_as_landed(make_world: MakeWorld) -> None:
    world = make_world()
    mine = world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})
    theirs = teammate_pushes(world, {'infra/extra.yaml': fleet.dump(
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'extra', 'namespace': 'demo'}})})
    with pytest.raises(AssertionError):  # the user's clone does not have it: flux-monitor must fetch it
        gitutil.git(world.clone, 'cat-file', '-e', f'{theirs}^{{commit}}')

    run = world.wait('--timeout', '30s', '--format', 'json')

    assert run.code == 0, run
    assert run.summary['revision'] == mine
    assert run.resource('GitRepository', 'flux-system')['revision'] == f'main@sha1:{theirs}'
    assert run.resource('Kustomization', 'apps')['revision'] == f'main@sha1:{theirs}'


def test_a_tag_followed_by_a_semver_git_repository(make_world: MakeWorld) -> None:
    files = fleet.fleet_files()
    files[f'{fleet.CLUSTER_PATH}/releases.yaml'] = '---\n'.join((
        fleet.git_repository('releases', fleet.BARE, {'semver': '>=0.1.0'}),
        fleet.kustomization('release', './release', source='releases', wait=False),
    ))
    files['release/config.yaml'] = release_config('0.1.0')
    world = make_world(files, tags=['v0.1.0'])
    world.commit('release 0.2.0', {'release/config.yaml': release_config('0.2.0')})
    gitutil.tag(world.clone, 'v0.2.0', message='release 0.2.0')
    sha = world.head
    gitutil.git(world.clone, 'push', '--quiet', 'origin', 'v0.2.0')  # the tag only: main stays behind

    run = world.wait('--revision', 'v0.2.0', '--timeout', '30s', '--format', 'json')

    assert run.code == 0, run
    assert run.summary['revision'] == sha
    assert run.resource('GitRepository', 'releases')['revision'] == f'v0.2.0@sha1:{sha}'
    assert run.resource('Kustomization', 'release')['state'] == 'landed'
    # main does not contain the tagged commit: what follows main is not waited for.
    assert [s['name'] for s in run.summary['sources']] == ['releases']


def release_config(version: str) -> str:
    return fleet.dump({'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'release', 'namespace': 'default'},
                       'data': {'version': version}})


def test_the_current_branch_default_follows_the_pushed_commit_not_head(make_world: MakeWorld) -> None:
    world = make_world()
    pushed = world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})
    head = world.commit('not pushed yet', {'apps/web.yaml': fleet.deployment(image='nginx:1.29')})

    run = world.wait('--timeout', '30s', '--format', 'json')

    assert run.code == 0, run
    assert run.summary['revision'] == pushed
    notes = [r['message'] for r in run.records if r['type'] == 'note']
    assert f'following the pushed commit {pushed[:7]} (origin/main); HEAD {head[:7]} differs' in notes


def test_a_shallow_clone_says_so_once_and_lands_the_exact_commit(make_world: MakeWorld) -> None:
    world = make_world()
    sha = world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})
    shallow = world.root / 'shallow'
    gitutil.git(world.root, 'clone', '--quiet', '--depth', '1', '--', world.bare.as_uri(), str(shallow))
    gitutil.git(shallow, 'remote', 'set-url', 'origin', str(world.bare))  # as Flux spells it

    run = world.wait('--timeout', '30s', '--format', 'simple', cwd=shallow)

    assert run.code == 0, run
    assert f'revision {sha}' in run.stdout
    assert run.stdout.count('this is a shallow clone') == 1, run


def test_a_shallow_clone_that_cannot_fetch_counts_the_exact_commit_only(make_world: MakeWorld,
                                                                        tmp_path: Path) -> None:
    bare, _ = fleet.make_repositories(tmp_path / 'repos', fleet.fleet_files())
    world = make_world(repo=UNREACHABLE, remotes={UNREACHABLE: str(bare)})
    world.bare = bare
    shallow = world.root / 'shallow'
    gitutil.git(world.root, 'clone', '--quiet', '--depth', '1', '--', bare.as_uri(), str(shallow))
    gitutil.git(shallow, 'remote', 'set-url', 'origin', WITH_CREDENTIALS)
    mine = gitutil.git(shallow, 'rev-parse', 'HEAD')
    theirs = teammate_pushes(world, {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})
    world.flux_fetches(theirs)

    run = world.wait('--timeout', '4s', '--format', 'json', cwd=shallow)

    assert run.code == 2, run  # the newer commit cannot be traced to ours here
    assert run.summary['revision'] == mine
    assert run.resource('GitRepository', 'flux-system')['revision'] == f'main@sha1:{theirs}'
    assert run.resource('GitRepository', 'flux-system')['state'] == 'pending'
    notes = [r['message'] for r in run.records if r['type'] == 'note'] + run.summary['notes']
    assert sum('shallow clone' in note for note in notes) == 2, notes  # the clone, then the ancestry: once each
    assert sum('only the exact commit counts' in note for note in notes) == 1, notes
    assert run.summary['repository'] == 'http://flux:***@127.0.0.1:1/org/fleet.git'
    assert 's3cret-token' not in run.stdout + run.stderr


def test_explicit_sources_skip_url_matching(make_world: MakeWorld) -> None:
    world = make_world()
    sha = world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})
    gitutil.git(world.clone, 'remote', 'set-url', 'origin', 'https://git.example.com/org/mirror.git')

    run, misnamed = fleet.together(
        lambda: world.wait('--source', 'GitRepository/flux-system/flux-system', '--scope', 'all', '--timeout', '30s',
                           '--format', 'json'),
        lambda: world.wait('--source', 'GitRepository/flux-system/fleet', '--timeout', '30s'))

    assert run.code == 0, run
    assert run.summary['revision'] == sha
    assert [s['name'] for s in run.summary['sources']] == ['flux-system']
    assert {r['name'] for r in run.summary['resources']} == {'flux-system', 'infra', 'apps', 'frontend'}
    # A named source that is not there is a mistake to point out, not "nothing to wait for".
    assert misnamed.code == 3, misnamed
    assert misnamed.stderr == ('flux-monitor: error: --source GitRepository/flux-system/fleet: not found in '
                               'flux-sandbox; check the kind, namespace and name (e.g. with flux get sources all -A)\n')
