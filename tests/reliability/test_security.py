"""Security: credentials never shown, private files, nothing written where it should not be, no shell, no option
injection, TLS verified, and a minimal RBAC manifest that is enough.

The credential tests run every command and hook path against a remote whose URL carries a password (served by a
real git HTTP server that wants it, tests/reliability/githttp.py) and a kubeconfig whose bearer token is a known
marker, then search every byte of output, result file and log for the markers.
"""
from __future__ import annotations

import ast
import base64
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import pytest
import yaml

from flux_monitor_hook.sandbox import Sandbox
from flux_monitor_hook.sandbox.apiserver import Rule
from flux_monitor_hook.sandbox.kubeconfig import kubeconfig_document
from flux_monitor_hook.sandbox.kubeconfig import write_kubeconfig
from tests.hooks.conftest import PRE_COMMIT
from tests.hooks.conftest import hook_config
from tests.reliability import githttp
from tests.reliability.conftest import ROOT
from tests.reliability.conftest import SPEED
from tests.reliability.conftest import MakeWorld
from tests.reliability.conftest import check_verdict
from tests.reliability.conftest import one_line_error
from tests.sandbox.gitutil import commit
from tests.sandbox.gitutil import git
from tests.sandbox.gitutil import init_repo
from tests.wait import fleet

pytestmark = pytest.mark.timeout(180)

PASSWORD = 'TOKENMARKER123'
BEARER = 'KUBETOKENMARKER456'
MARKERS = (PASSWORD.encode(), BEARER.encode(), base64.b64encode(f'ci:{PASSWORD}'.encode()),
           base64.b64encode(PASSWORD.encode()).rstrip(b'='), base64.b64encode(BEARER.encode()).rstrip(b'='))
REQUESTED_AT = 'reconcile.fluxcd.io/requestedAt'


@dataclass
class SecretWorld:
    """A fleet repository served over HTTP with a password, a sandbox whose GitRepository has the same
    credentialed URL, a clone whose origin is that URL, and a kubeconfig whose token is a marker."""

    root: Path
    url: str
    bare: Path
    clone: Path
    sandbox: Sandbox
    env: dict[str, str]
    outputs: list[tuple[str, bytes]] = field(default_factory=list)

    def run(self, label: str, *args: str, cwd: Path | None = None, timeout: float = 90, input: bytes | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(list(args), cwd=cwd or self.clone, env=env or self.env, capture_output=True,
                                timeout=timeout, check=False, input=input,
                                stdin=None if input is not None else subprocess.DEVNULL)
        self.outputs.append((f'{label} stdout', result.stdout))
        self.outputs.append((f'{label} stderr', result.stderr))
        return result

    def flux_monitor(self, label: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        return self.run(label, sys.executable, '-m', 'flux_monitor_hook', *args, **kwargs)

    def git(self, *args: str) -> str:
        result = self.run(f'git {args[0]}', 'git', *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.decode().strip()

    def commit(self, message: str, files: dict[str, str | None]) -> str:
        for name, content in files.items():
            path = self.clone / name
            if content is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
        self.git('add', '--all', '--', *files)
        self.git('commit', '--quiet', '-m', message)
        return self.git('rev-parse', 'HEAD')

    def leaks(self) -> list[str]:
        """Where a marker shows: in the outputs gathered, or in a file flux-monitor wrote."""
        found = [label for label, data in self.outputs if any(marker in data for marker in MARKERS)]
        state = self.clone / '.git' / 'flux-monitor'
        for path in sorted(state.rglob('*')) if state.is_dir() else []:
            if path.is_file() and any(marker in path.read_bytes() for marker in MARKERS):
                found.append(str(path))
        return found


@pytest.fixture
def secret_world(tmp_path: Path) -> Iterator[SecretWorld]:
    seed = init_repo(tmp_path / 'seed')
    commit(seed, 'fleet', {**fleet.fleet_files(),
                           '.pre-commit-config.yaml': hook_config(f'{sys.executable} -m flux_monitor_hook hook')})
    served = tmp_path / 'srv'
    bare = served / 'org' / 'fleet.git'
    bare.parent.mkdir(parents=True)
    git(tmp_path, 'clone', '--quiet', '--bare', str(seed), str(bare))
    home, temporary = tmp_path / 'home', tmp_path / 'tmp'
    home.mkdir()
    temporary.mkdir()
    with githttp.serve(served, 'ci', PASSWORD) as base:
        url = f'{base}/org/fleet.git'
        with Sandbox(repo=url, remotes={url: str(bare)}, cluster_path=fleet.CLUSTER_PATH, speed=SPEED,
                     git_interval='1h', kubeconfig_path=tmp_path / 'admin.kubeconfig') as sandbox:
            assert sandbox.wait_idle(30)
            repository = sandbox.get(fleet.GIT, 'GitRepository', 'flux-system', 'flux-system')
            assert repository['spec']['url'] == url and 'main@sha1:' in repository['status']['artifact']['revision']
            kubeconfig = tmp_path / 'kubeconfig'
            sandbox.add_token(None, token=BEARER, kubeconfig_path=kubeconfig)
            env = fleet.clean_env(HOME=str(home), KUBECONFIG=str(kubeconfig), TMPDIR=str(temporary),
                                  PRE_COMMIT_HOME=str(tmp_path / 'pre-commit'))
            clone = tmp_path / 'clone'
            subprocess.run(['git', 'clone', '--quiet', url, str(clone)], env=env, check=True, capture_output=True,
                           timeout=60)
            (clone / '.flux-monitor.yaml').write_text(
                'timeout: 20s\nerror_handling:\n  retry_attempts: 3\n  retry_delay: 200ms\n'
                'notify:\n  webhook: http://ci:' + PASSWORD + '@127.0.0.1:9/hook\n')
            yield SecretWorld(tmp_path, url, bare, clone, sandbox, env)
            assert sandbox.controllers.errors == []


def test_no_command_shows_a_credential(secret_world: SecretWorld) -> None:
    world = secret_world
    origin = subprocess.run(['git', 'remote', 'get-url', 'origin'], cwd=world.clone, env=world.env,
                            capture_output=True, text=True, check=True).stdout
    assert PASSWORD in origin  # the premise: the URL git uses has it
    sha = world.commit('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})
    world.git('push', '--quiet', 'origin', 'main')

    waits = [('wait', '--timeout', '30s'), ('wait', '--format', 'simple', '-v', '--timestamps'),
             ('wait', '--format', 'json', '--scope', 'all'), ('wait', '--revision', sha, '-v', '--color', 'always')]
    for args in waits:
        result = world.flux_monitor(' '.join(args), *args)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert world.flux_monitor('check', 'check').returncode == 0
    for args in (('plan',), ('plan', '--format', 'json'), ('plan', '--revision', 'HEAD~1')):
        assert world.flux_monitor(' '.join(args), *args).returncode == 0
    message = f"failed to checkout and determine revision: unable to clone '{world.url}': authentication required"
    for args in (('explain', message), ('explain', '--format', 'json', '--kind', 'GitRepository', message)):
        assert world.flux_monitor('explain', *args).returncode == 0
    assert world.flux_monitor('explain stdin', 'explain', '-', input=message.encode()).returncode == 0
    # Errors that name the remote.
    for args in (('wait', '--remote', 'upstream'), ('wait', '--revision', 'no-such-thing'),
                 ('wait', '--branch=-x')):
        assert world.flux_monitor(' '.join(args), *args).returncode == 3

    # flux-monitor push, in the foreground.
    world.commit('web: nginx 1.29', {'apps/web.yaml': fleet.deployment(image='nginx:1.29')})
    pushed = world.flux_monitor('push', 'push', 'origin', 'main')
    assert pushed.returncode == 0, pushed.stdout.decode() + pushed.stderr.decode()

    # A failure whose message (and Warning event) carry the URL with its password, as an older Flux wrote them.
    failing = world.commit('web: nginx 1.30', {'apps/web.yaml': fleet.deployment(image='nginx:1.30')})
    world.git('push', '--quiet', 'origin', 'main')
    leaky = f"failed to checkout and determine revision: unable to clone '{world.url}': authentication required"
    store = world.sandbox.store

    def fail(obj: dict[str, Any]) -> None:
        obj['status']['conditions'] = [{'type': 'Ready', 'status': 'False', 'reason': 'GitOperationFailed',
                                        'message': leaky, 'lastTransitionTime': '2026-01-01T00:00:00Z'},
                                       {'type': 'FetchFailed', 'status': 'True', 'reason': 'GitOperationFailed',
                                        'message': leaky, 'lastTransitionTime': '2026-01-01T00:00:00Z'}]

    store.set_status(world.sandbox.resource_type(fleet.GIT, 'GitRepository'), 'flux-system', 'flux-system', fail)
    world.sandbox.apply({'apiVersion': 'v1', 'kind': 'Event', 'type': 'Warning', 'reason': 'GitOperationFailed',
                         'message': leaky, 'metadata': {'name': 'flux-system.leaky', 'namespace': 'flux-system'},
                         'involvedObject': {'kind': 'GitRepository', 'name': 'flux-system',
                                            'namespace': 'flux-system', 'apiVersion': fleet.GIT},
                         'lastTimestamp': '2026-01-01T00:00:00Z'})
    for args in (('wait', '--no-trigger', '--timeout', '10s'), ('wait', '--no-trigger', '--format', 'json'),
                 ('wait', '--no-trigger', '--format', 'simple')):
        result = world.flux_monitor(' '.join(args), *args)
        assert result.returncode == 1, result.stdout.decode() + result.stderr.decode()
        assert b"unable to clone 'http://ci:***@127.0.0.1:" in result.stdout  # shown, without the password
    assert failing

    # The sandbox, with the credentialed URL mapped to the repository, and its own bad input.
    up = subprocess.Popen([sys.executable, '-m', 'flux_monitor_hook', 'sandbox', 'up', '--repo', str(world.bare),
                           '--cluster-path', fleet.CLUSTER_PATH, '--kubeconfig', str(world.root / 'up.kubeconfig'),
                           '--remote', f'{world.url}={world.bare}'], env=world.env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    assert up.stdout is not None
    deadline = time.monotonic() + 30
    seen = b''
    while b'export KUBECONFIG' not in seen and time.monotonic() < deadline:
        seen += up.stdout.readline()
    up.send_signal(signal.SIGTERM)
    rest, errors = up.communicate(timeout=30)
    world.outputs += [('sandbox up stdout', seen + rest), ('sandbox up stderr', errors)]
    assert up.returncode == 0 and b'export KUBECONFIG' in seen, errors
    for args in (('--repo', str(world.bare), '--remote', world.url), ('--repo', world.url)):
        result = world.flux_monitor('sandbox up', 'sandbox', 'up', '--cluster-path', 'c', '--kubeconfig',
                                    str(world.root / 'bad.kubeconfig'), *args)
        assert result.returncode == 3

    assert world.leaks() == []


def test_no_hook_path_shows_a_credential_and_nothing_is_written_outside_the_git_directory(
        secret_world: SecretWorld) -> None:
    world = secret_world
    home, temporary = Path(world.env['HOME']), Path(world.env['TMPDIR'])
    before = {str(p.relative_to(world.root)) for d in (home, temporary) for p in d.rglob('*')}
    result = world.run('pre-commit install', PRE_COMMIT, 'install', '--hook-type', 'pre-push', '--hook-type',
                       'post-commit')
    assert result.returncode == 0, result.stderr
    untracked_before = world.git('status', '--porcelain', '--ignored')

    # pre-push: a background follower.
    pushed = world.commit('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})
    world.git('push', '--quiet', 'origin', 'main')
    assert wait_for_result(world, pushed, 'pre-push')['result'] == 'succeeded'
    # post-commit: a follower for a commit not pushed yet, which lands once `flux-monitor push` pushes it.
    committed = world.commit('web: nginx 1.29', {'apps/web.yaml': fleet.deployment(image='nginx:1.29')})
    time.sleep(1)
    assert world.flux_monitor('push', 'push', 'origin', 'main').returncode == 0
    assert wait_for_result(world, committed, 'post-commit')['result'] == 'succeeded'
    # A follower that fails to reach the cluster says why in its log and result.
    world.env['KUBECONFIG'] = str(world.root / 'broken.kubeconfig')
    write_kubeconfig(Path(world.env['KUBECONFIG']), kubeconfig_document('http://127.0.0.1:1', BEARER))
    unreachable = world.commit('web: nginx 1.30', {'apps/web.yaml': fleet.deployment(image='nginx:1.30')})
    world.git('push', '--quiet', 'origin', 'main')
    assert wait_for_result(world, unreachable, 'pre-push', timeout=60)['result'] in ('error', 'timeout')
    world.env['KUBECONFIG'] = str(world.root / 'kubeconfig')
    for args in (('status',), ('status', '--format', 'json'), ('status', '--branch', 'main'), ('stop',)):
        world.flux_monitor(' '.join(args), *args)
    # By hand: the foreground wait for the pushed revision.
    by_hand = world.run('pre-commit run', PRE_COMMIT, 'run', 'flux-monitor', '--hook-stage', 'manual', '--verbose')
    assert by_hand.returncode == 0 and b'All resources reconciled successfully' in by_hand.stdout, by_hand.stdout

    # post-receive on the server: what the pusher sees as `remote:` lines.
    hook = world.bare / 'hooks' / 'post-receive'
    hook.write_text(f'#!/bin/sh\nexport KUBECONFIG={world.env["KUBECONFIG"]} HOME={home} TMPDIR={temporary}\n'
                    f'exec {sys.executable} -m flux_monitor_hook post-receive --url {world.url} --format simple\n')
    hook.chmod(0o755)
    world.commit('web: nginx 1.31', {'apps/web.yaml': fleet.deployment(image='nginx:1.31')})
    received = world.run('git push (post-receive)', 'git', 'push', '--no-verify', 'origin', 'main', timeout=120)
    assert received.returncode == 0 and b'remote: result: succeeded' in received.stderr, received.stderr

    assert world.leaks() == []
    # Only owner-readable files under .git/flux-monitor, and nothing else written by flux-monitor.
    state = world.clone / '.git' / 'flux-monitor'
    for path in [state, *state.rglob('*')]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f'{path} is open to others'
    after = {str(p.relative_to(world.root)) for d in (home, temporary) for p in d.rglob('*')}
    assert after == before, f'written outside the git directory: {sorted(after - before)}'
    assert world.git('status', '--porcelain', '--ignored') == untracked_before


def wait_for_result(world: SecretWorld, sha: str, stage: str, timeout: float = 40) -> dict[str, Any]:
    import json

    deadline = time.monotonic() + timeout
    results = world.clone / '.git' / 'flux-monitor' / 'results'
    while time.monotonic() < deadline:
        for path in sorted(results.glob('*.json')) if results.is_dir() else []:
            data = json.loads(path.read_text())
            if data.get('sha') == sha and data.get('stage') == stage:
                return data
        time.sleep(0.1)
    raise AssertionError(f'no {stage} result for {sha} within {timeout}s')


# -- no shell, and no option injection ---------------------------------------------------------------------

SHELL_CALLS = {('os', 'system'), ('os', 'popen'), ('subprocess', 'getoutput'), ('subprocess', 'getstatusoutput'),
               ('asyncio', 'create_subprocess_shell'), ('os', 'execl'), ('os', 'execlp'), ('os', 'spawnl')}


def test_no_shell_is_ever_used() -> None:
    found = []
    sources = sorted((ROOT / 'flux_monitor_hook').rglob('*.py'))
    assert len(sources) > 40
    for path in sources:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == 'shell' and \
                    not (isinstance(node.value, ast.Constant) and node.value.value is False):
                found.append(f'{path}:{node.value.lineno}: shell={ast.unparse(node.value)}')
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    (node.value.id, node.attr) in SHELL_CALLS:
                found.append(f'{path}:{node.lineno}: {node.value.id}.{node.attr}')
            if isinstance(node, ast.ImportFrom) and node.module in ('os', 'subprocess', 'asyncio') and \
                    any((node.module, alias.name) in SHELL_CALLS for alias in node.names):
                found.append(f'{path}:{node.lineno}: from {node.module} import ...')
    assert found == []


@pytest.mark.parametrize('args', [
    ('wait', '--revision=--output={canary}'),
    ('wait', '--revision', '--output={canary}'),
    ('wait', '--branch=--output={canary}'),
    ('wait', '--remote=--upload-pack=touch {canary}'),
    ('wait', '--revision', 'HEAD', '--branch', '-o{canary}'),
    ('plan', '--revision=--output={canary}'),
    ('wait', '--repo-path=--output={canary}'),
], ids=lambda args: ' '.join(args))
def test_values_cannot_inject_git_options(tmp_path: Path, args: tuple[str, ...]) -> None:
    _, clone = fleet.make_repositories(tmp_path, fleet.fleet_files())
    canary = tmp_path / 'canary'
    env = fleet.clean_env(HOME=str(tmp_path), KUBECONFIG=str(tmp_path / 'none'))

    result = subprocess.run([*fleet.command()[:3], *(a.format(canary=canary) for a in args)], cwd=clone, env=env,
                            capture_output=True, text=True, timeout=60, check=False)

    assert not canary.exists(), f'{args} made git write {canary}'
    assert result.returncode in (3, 4), result
    one_line_error(result.stderr)


def test_post_receive_input_cannot_inject_git_options(secret_world: SecretWorld) -> None:
    world = secret_world
    canary = world.root / 'canary'
    lines = f'{"0" * 40} --output={canary} refs/heads/main\n{"0" * 40} {"1" * 40} refs/heads/--upload-pack=x\n'

    result = world.flux_monitor('post-receive', 'post-receive', '--url', world.url, '--timeout', '3s',
                                cwd=world.bare, input=lines.encode())

    assert not canary.exists()
    assert 'Traceback' not in result.stderr.decode(), result.stderr.decode()
    assert result.returncode in (1, 2, 3), result


# -- TLS ---------------------------------------------------------------------------------------------------

def tls_kubeconfig(path: Path, sandbox: Sandbox, cluster: dict[str, Any]) -> Path:
    document = kubeconfig_document(sandbox.url, sandbox.token)
    document['clusters'][0]['cluster'] = {'server': sandbox.url, **cluster}
    write_kubeconfig(path, document)
    return path


def test_tls_is_verified_unless_the_kubeconfig_says_otherwise(make_world: MakeWorld) -> None:
    import trustme

    world = make_world(tls=True)
    sandbox = world.sandbox
    assert sandbox.url.startswith('https://')
    other_ca = base64.b64encode(trustme.CA().cert_pem.bytes()).decode()
    wrong = tls_kubeconfig(world.root / 'wrong-ca.kubeconfig', sandbox, {'certificate-authority-data': other_ca})
    none = tls_kubeconfig(world.root / 'no-ca.kubeconfig', sandbox, {})
    insecure = tls_kubeconfig(world.root / 'insecure.kubeconfig', sandbox, {'insecure-skip-tls-verify': True})
    world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    right, wrong_ca, no_ca, skipped = fleet.together(
        lambda: world.wait('--format', 'json', '--timeout', '30s'),
        lambda: world.wait('--kubeconfig', str(wrong), '--timeout', '30s'),
        lambda: world.wait('--kubeconfig', str(none), '--timeout', '30s'),
        lambda: world.wait('--kubeconfig', str(insecure), '--format', 'json', '--timeout', '30s'))

    check_verdict(right, 'succeeded', 0)  # the kubeconfig's own CA: verified, and it works
    for refused in (wrong_ca, no_ca):
        assert refused.code == 4, refused
        line = one_line_error(refused.stderr)
        assert "the server's certificate is not trusted" in line and 'certificate-authority-data' in line, line
        assert refused.seconds < 10, refused  # a certificate does not get better with retries
    check_verdict(skipped, 'succeeded', 0)


# -- the minimal RBAC manifest -------------------------------------------------------------------------------

RBAC = ROOT / 'docs' / 'rbac.yaml'


def manifest_rules() -> tuple[Rule, ...]:
    """docs/rbac.yaml's ClusterRole, as the sandbox's token rules (which name resources by plural)."""
    documents = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    roles = [d for d in documents if d.get('kind') == 'ClusterRole']
    assert len(roles) == 1, 'docs/rbac.yaml has one ClusterRole'
    rules = []
    for rule in roles[0]['rules']:
        assert '*' not in rule['verbs'] and '*' not in rule['resources'] and '*' not in rule['apiGroups'], rule
        rules.append(Rule(frozenset(rule['verbs']), frozenset(rule['resources'])))
    return tuple(rules)


def test_the_rbac_manifest_is_minimal() -> None:
    documents = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    role = next(d for d in documents if d.get('kind') == 'ClusterRole')
    granted = {(group, resource, verb) for rule in role['rules'] for group in rule['apiGroups']
               for resource in rule['resources'] for verb in rule['verbs']}
    writes = {(group, resource, verb) for group, resource, verb in granted if verb not in ('get', 'list', 'watch')}
    assert writes == {('source.toolkit.fluxcd.io', plural, 'patch')
                      for plural in ('gitrepositories', 'ocirepositories', 'buckets')}
    from flux_monitor_hook.cluster import FLUX_APIS

    for group, plural, _ in FLUX_APIS.values():
        assert {(group, plural, verb) for verb in ('get', 'list', 'watch')} <= granted, plural
    for group in ('', 'events.k8s.io'):
        assert {(group, 'events', verb) for verb in ('get', 'list', 'watch')} <= granted
    assert ('apps', 'deployments', 'list') in granted
    binding = next(d for d in documents if d.get('kind') == 'ClusterRoleBinding')
    assert binding['roleRef']['name'] == role['metadata']['name']


def test_the_monitor_works_with_exactly_the_rbac_manifest(make_world: MakeWorld) -> None:
    world = make_world()
    kubeconfig = world.root / 'rbac.kubeconfig'
    world.sandbox.add_token(manifest_rules(), user='system:serviceaccount:flux-system:flux-monitor',
                            kubeconfig_path=kubeconfig)
    sha = world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    run = world.wait('--kubeconfig', str(kubeconfig), '--scope', 'all', '--format', 'json', '--timeout', '30s')

    check_verdict(run, 'succeeded', 0)
    assert sha in run.resource('GitRepository', 'flux-system')['revision']
    assert not [r for r in run.records if r['type'] == 'note' and 'not allowed' in r['message']], run
    annotations = world.get(fleet.GIT, 'GitRepository', 'flux-system')['metadata'].get('annotations') or {}
    assert REQUESTED_AT in annotations  # it triggered reconciliation
    result = subprocess.run([*fleet.command()[:3], 'check', '--kubeconfig', str(kubeconfig)], cwd=world.clone,
                            env=world.env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'may request reconciliation of GitRepository/flux-system/flux-system' in result.stdout
