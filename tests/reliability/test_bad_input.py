"""Bad input is refused with one line that names the problem and the fix, the documented exit code (README
"Exit codes": 3 usage or configuration, 4 cluster or Flux unavailable or not authorised), and no traceback.

Each case runs the real command line (`python -m flux_monitor_hook ...`) in a prepared place: a clone whose
origin is a bare repository, or a directory that is not what the command needs.
"""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest

from flux_monitor_hook.sandbox import Sandbox
from flux_monitor_hook.sandbox.kinds import FLUX_KINDS
from flux_monitor_hook.sandbox.kubeconfig import kubeconfig_document
from flux_monitor_hook.sandbox.kubeconfig import write_kubeconfig
from tests.reliability.conftest import MakeWorld
from tests.reliability.conftest import check_verdict
from tests.reliability.conftest import flux_monitor
from tests.reliability.conftest import one_line_error
from tests.sandbox.gitutil import commit
from tests.sandbox.gitutil import git
from tests.sandbox.gitutil import init_repo
from tests.wait import fleet

pytestmark = pytest.mark.timeout(120)

USAGE, UNAVAILABLE = 3, 4
FLUX_MONITOR_YAML = '.flux-monitor.yaml'


@dataclass
class Places:
    """Where the cases run: repositories in every state a user's may be in, and kubeconfigs likewise."""

    root: Path
    clone: Path  # tracks origin/main, origin is a bare repository
    bare: Path
    home: Path
    kubeconfigs: dict[str, Path] = field(default_factory=dict)

    def env(self, kubeconfig: str = 'unreachable') -> dict[str, str]:
        return fleet.clean_env(HOME=str(self.home), KUBECONFIG=str(self.kubeconfigs.get(kubeconfig, kubeconfig)))


def exec_user(script: str) -> dict[str, object]:
    return {'exec': {'apiVersion': 'client.authentication.k8s.io/v1beta1', 'command': '/bin/sh',
                     'args': ['-c', script], 'interactiveMode': 'Never'}}


def kubeconfig_with_user(path: Path, server: str, user: dict[str, object]) -> Path:
    document = kubeconfig_document(server, 'unused')
    document['users'][0]['user'] = user
    write_kubeconfig(path, document)
    return path  # write_kubeconfig returns nothing


@pytest.fixture(scope='module')
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Places]:
    root = tmp_path_factory.mktemp('places')
    bare, clone = fleet.make_repositories(root, fleet.fleet_files())
    for index in range(3):  # some history, for the shallow clone to cut
        commit(clone, f'change {index}', {'apps/note.txt': f'{index}\n'})
    git(clone, 'push', '--quiet', 'origin', 'main')
    home = root / 'home'
    home.mkdir()
    made = Places(root, clone, bare, home)

    (root / 'plain').mkdir()
    empty = init_repo(root / 'empty')
    git(empty, 'remote', 'add', 'origin', str(bare))
    no_remote = init_repo(root / 'no-remote')
    commit(no_remote, 'alone', {'a.txt': 'a\n'})
    git(root, 'clone', '--quiet', str(bare), str(root / 'detached'))
    git(root / 'detached', 'checkout', '--quiet', '--detach', 'HEAD~1')
    git(root, 'clone', '--quiet', '--depth', '1', f'file://{bare}', str(root / 'shallow'))

    server = 'http://127.0.0.1:1'
    kubeconfigs = made.kubeconfigs
    kubeconfigs['unreachable'] = root / 'unreachable.kubeconfig'
    write_kubeconfig(kubeconfigs['unreachable'], kubeconfig_document(server, 't'))
    kubeconfigs['missing'] = root / 'no-such.kubeconfig'
    kubeconfigs['corrupt'] = root / 'corrupt.kubeconfig'
    kubeconfigs['corrupt'].write_text('apiVersion: v1\nclusters: [\n  - name: x\n')
    kubeconfigs['not-kubeconfig'] = root / 'list.kubeconfig'
    kubeconfigs['not-kubeconfig'].write_text('- just\n- a list\n')
    no_current = kubeconfig_document(server, 't')
    del no_current['current-context']
    kubeconfigs['no-current'] = root / 'no-current.kubeconfig'
    write_kubeconfig(kubeconfigs['no-current'], no_current)
    kubeconfigs['exec-fails'] = kubeconfig_with_user(
        root / 'exec-fails.kubeconfig', server, exec_user('echo "error: the refresh token expired" >&2; exit 1'))
    kubeconfigs['exec-missing'] = kubeconfig_with_user(
        root / 'exec-missing.kubeconfig', server,
        {'exec': {'apiVersion': 'client.authentication.k8s.io/v1beta1', 'command': str(root / 'no-such-login')}})
    with Sandbox() as sandbox:  # only to answer 401 to an expired token
        expired = ('{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", "status": '
                   '{"token": "stale-token", "expirationTimestamp": "2001-01-01T00:00:00Z"}}')
        kubeconfigs['exec-expired'] = kubeconfig_with_user(root / 'exec-expired.kubeconfig', sandbox.url,
                                                           exec_user(f"echo '{expired}'"))
        # A cluster without Flux: none of its kinds are served.
        no_flux = Sandbox()
        for flux_kind in FLUX_KINDS:
            no_flux.registry.remove_group_resource(flux_kind.group, flux_kind.plural)
        with no_flux:
            kubeconfigs['no-flux'] = no_flux.write_kubeconfig(root / 'no-flux.kubeconfig', no_flux.token)
            yield made


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]  # fragments of the one line: the problem and the fix
    where: str = 'clone'  # a directory under the places' root, or 'clone'
    kubeconfig: str = 'unreachable'
    config: str | bytes | None = None  # .flux-monitor.yaml at the clone's root
    stdin: bytes | None = None


WAIT = ('wait', '--timeout', '5s')

CASES: dict[str, Case] = {
    # -- .flux-monitor.yaml ------------------------------------------------------------------------------
    'config-malformed-yaml': Case(WAIT, USAGE, ('.flux-monitor.yaml:4:1: invalid YAML', 'flow sequence at line 3'),
                                  config='timeout: 1m\noutput:\n  format: [json\n'),
    'config-tab-indentation': Case(WAIT, USAGE, ('.flux-monitor.yaml:2:1: invalid YAML', 'indent with spaces'),
                                   config='output:\n\tformat: json\n'),
    'config-unknown-key': Case(WAIT, USAGE, ("unknown key 'timout'", "did you mean 'timeout'?"),
                               config='timout: 5m\n'),
    'config-unknown-nested-key': Case(WAIT, USAGE, ("unknown key 'retries' under error_handling",
                                                    'retry_attempts'),
                                      config='error_handling:\n  retries: 3\n'),
    'config-key-in-the-wrong-section': Case(WAIT, USAGE, ("unknown key 'retry_attempts'",
                                                          'it belongs under error_handling'),
                                            config='retry_attempts: 3\n'),
    'config-list-for-a-duration': Case(WAIT, USAGE, ('timeout: expected a duration, got a list', 'use e.g. 300'),
                                       config='timeout: [5m]\n'),
    'config-word-for-a-boolean': Case(WAIT, USAGE, ('trigger_reconcile: expected true or false',),
                                      config='trigger_reconcile: sometimes\n'),
    'config-number-for-a-name': Case(WAIT, USAGE, ('cluster.context: expected a string', 'put it in quotes'),
                                     config='cluster:\n  context: 1234\n'),
    'config-bad-duration': Case(WAIT, USAGE, ("'soon' is not a duration", 'use e.g. 300, 300s, 5m or 1h30m'),
                                config='timeout: soon\n'),
    'config-negative-timeout': Case(WAIT, USAGE, ("'-5m' is negative", 'use e.g. 300'), config='timeout: -5m\n'),
    'config-zero-timeout': Case(WAIT, USAGE, ('must be more than 0', 'use e.g. 300'), config='timeout: 0\n'),
    'config-negative-retries': Case(WAIT, USAGE, ('retry_attempts: -1 is negative', 'use 0 or more'),
                                    config='error_handling:\n  retry_attempts: -1\n'),
    'config-not-a-mapping': Case(WAIT, USAGE, ('expected a mapping of settings', 'e.g. timeout: 5m'),
                                 config='- timeout: 5m\n'),
    'config-bad-source': Case(WAIT, USAGE, ("'GitRepo/flux-system' is not Kind/namespace/name",
                                            'e.g. GitRepository/flux-system/flux-system'),
                              config='sources: [GitRepo/flux-system]\n'),
    'config-unknown-format': Case(WAIT, USAGE, ("'xml' is not one of structured, simple, json",),
                                  config='output:\n  format: xml\n'),
    'config-both-contexts': Case(WAIT, USAGE, ('cannot both be set', 'keep context for one cluster'),
                                 config='cluster:\n  context: a\n  contexts: [b]\n'),
    'config-not-utf8': Case(WAIT, USAGE, ('not UTF-8 text', 'save it as UTF-8'),
                            config=b'timeout: 5m\n# caf\xe9\n'),
    'config-file-not-found': Case((*WAIT, '--config', 'absent.yaml'), USAGE,
                                  ('absent.yaml: config file not found', 'check the path')),
    # -- flags -----------------------------------------------------------------------------------------------
    'flag-unknown': Case(('wait', '--frobnicate'), USAGE, ('unrecognized arguments: --frobnicate',
                                                           'see flux-monitor --help')),
    'flag-unknown-command': Case(('frobnicate',), USAGE, ("invalid choice: 'frobnicate'", '--help')),
    'flag-bad-format': Case(('wait', '--format', 'xml'), USAGE, ("invalid choice: 'xml'", "choose from")),
    'flag-bad-timeout': Case(('wait', '--timeout', '5x'), USAGE, ("'5x' is not a duration", 'use e.g. 300')),
    'flag-negative-timeout': Case(('wait', '--timeout=-1s'), USAGE, ("'-1s' is negative", 'use e.g. 300')),
    'flag-bad-source': Case((*WAIT, '--source', 'bogus'), USAGE, ("'bogus' is not Kind/namespace/name",
                                                                   'e.g. GitRepository/flux-system/flux-system')),
    'flag-bad-namespace': Case((*WAIT, '--namespace', 'Bad_NS'), USAGE, ("'Bad_NS' is not a namespace name",
                                                                          'lowercase letters')),
    'flag-quiet-and-verbose': Case(('wait', '-q', '-v'), USAGE, ('not allowed with argument',)),
    'flag-missing-value': Case(('wait', '--timeout'), USAGE, ('expected one argument', '--help')),
    'flag-status-format': Case(('status', '--format', 'yaml'), USAGE, ("invalid choice: 'yaml'",)),
    # -- kubeconfig --------------------------------------------------------------------------------------------
    'kubeconfig-missing': Case(WAIT, UNAVAILABLE, ('no kubeconfig at', 'set KUBECONFIG, pass --kubeconfig'),
                               kubeconfig='missing'),
    'kubeconfig-corrupt': Case(WAIT, UNAVAILABLE, ('the kubeconfig is not valid YAML', 'fix or regenerate it'),
                               kubeconfig='corrupt'),
    'kubeconfig-not-a-kubeconfig': Case(WAIT, UNAVAILABLE, ('not a kubeconfig', 'fix or regenerate it'),
                                        kubeconfig='not-kubeconfig'),
    'kubeconfig-no-current-context': Case(WAIT, USAGE, ('has no current context', 'pass --context'),
                                          kubeconfig='no-current'),
    'kubeconfig-unknown-context': Case((*WAIT, '--context', 'production'), USAGE,
                                       ("context 'production' is not in", 'use one of: flux-sandbox')),
    'kubeconfig-exec-plugin-fails': Case(WAIT, UNAVAILABLE, ('its credential plugin failed',
                                                             'the refresh token expired', 'log in again'),
                                         kubeconfig='exec-fails'),
    'kubeconfig-exec-plugin-missing': Case(WAIT, UNAVAILABLE, ('its credential plugin failed', 'no-such-login',
                                                               'log in again'),
                                           kubeconfig='exec-missing'),
    'kubeconfig-exec-expired-credential': Case(WAIT, UNAVAILABLE, ('rejected the credentials (401 Unauthorized)',
                                                                   'refresh them'),
                                               kubeconfig='exec-expired'),
    'cluster-unreachable': Case(WAIT, UNAVAILABLE, ('cluster flux-sandbox (http://127.0.0.1:1) is unavailable',
                                                    'check that the cluster is up and reachable')),
    'flux-not-installed': Case(WAIT, UNAVAILABLE, ('Flux is not installed in cluster flux-sandbox',
                                                   'install Flux with flux bootstrap or flux install'),
                               kubeconfig='no-flux'),
    'check-flux-not-installed': Case(('check',), UNAVAILABLE, (), kubeconfig='no-flux'),
    # -- git ---------------------------------------------------------------------------------------------------
    'git-not-a-repository': Case(WAIT, USAGE, ('not a git repository', 'pass --repo-path'), where='plain'),
    'git-repo-path-missing': Case((*WAIT, '--repo-path', 'nowhere'), USAGE,
                                  ('not a git repository', 'pass --repo-path'), where='plain'),
    'git-bare-repository': Case((*WAIT, '--repo-path', '.'), USAGE, ('not inside a git work tree',
                                                                     'inside a checkout'), where='fleet.git'),
    'git-no-remote': Case(WAIT, USAGE, ('this repository has no remote', 'git remote add origin URL'),
                          where='no-remote'),
    'git-unknown-remote': Case((*WAIT, '--remote', 'upstream'), USAGE, ("unknown remote 'upstream'",
                                                                        'pass --remote NAME')),
    'git-unknown-revision': Case((*WAIT, '--revision', 'no-such-branch'), USAGE,
                                 ("unknown revision 'no-such-branch'", 'check the spelling')),
    'git-option-as-revision': Case((*WAIT, '--revision=--output=/tmp/x'), USAGE,
                                   ("invalid revision '--output=/tmp/x'", 'give a commit SHA, branch or tag')),
    'git-detached-head': Case(WAIT, USAGE, ('HEAD is detached', 'pass --branch NAME'), where='detached'),
    'git-shallow-clone': Case((*WAIT, '--revision', 'HEAD~2'), USAGE,
                              ("unknown revision 'HEAD~2'", 'git fetch --unshallow'), where='shallow'),
    'git-empty-repository': Case(WAIT, USAGE, ('has no commits yet', 'commit and push first'), where='empty'),
    'status-wait-detached-head': Case(('status', '--wait'), USAGE, ('HEAD is detached', 'pass --branch NAME'),
                                      where='detached'),
    'plan-unknown-revision': Case(('plan', '--revision', 'v9.9.9'), USAGE, ("unknown revision 'v9.9.9'",)),
    'post-receive-outside-a-repository': Case(('post-receive',), USAGE, ('must run inside a git repository',),
                                              where='plain', stdin=b''),
    # -- explain -----------------------------------------------------------------------------------------------
    'explain-empty-message': Case(('explain', ''), USAGE, ('the message is empty',
                                                           'pass it as an argument or pipe it in')),
    'explain-blank-stdin': Case(('explain', '-'), USAGE, ('the message is empty',), stdin=b'  \n\n'),
    'explain-bad-format': Case(('explain', '--format', 'yaml', 'x'), USAGE, ("invalid choice: 'yaml'",)),
    # -- the sandbox ---------------------------------------------------------------------------------------
    'sandbox-repo-not-a-repository': Case(('sandbox', 'up', '--repo', 'nowhere', '--cluster-path', 'c',
                                           '--kubeconfig', 'k'), USAGE, ("--repo 'nowhere' is not a local git "
                                                                        'repository', 'give a path')),
    'sandbox-speed-zero': Case(('sandbox', 'up', '--repo', 'clone', '--cluster-path', 'c', '--kubeconfig', 'k',
                                '--speed', '0'), USAGE, ('--speed 0.0 must be above 0', 'e.g. --speed 10'),
                               where='.'),
    'sandbox-bad-faults': Case(('sandbox', 'up', '--repo', 'clone', '--cluster-path', 'c', '--kubeconfig', 'k',
                                '--faults', 'boom:1'), USAGE, ("unknown fault 'boom'", 'expected e.g. fail:3:503'),
                               where='.'),
    'sandbox-remote-without-path': Case(('sandbox', 'up', '--repo', 'clone', '--cluster-path', 'c',
                                         '--kubeconfig', 'k', '--remote', 'https://example.com/x.git'), USAGE,
                                        ('is not URL=PATH', 'e.g. --remote'), where='.'),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_bad_input_is_one_line_with_the_documented_exit_code(places: Places, tmp_path: Path, name: str) -> None:
    case = CASES[name]
    cwd = places.clone if case.where == 'clone' else places.root / case.where
    if case.config is not None:
        cwd = tmp_path / 'clone'  # its own clone, for its own .flux-monitor.yaml
        git(tmp_path, 'clone', '--quiet', str(places.bare), str(cwd))
        target = cwd / FLUX_MONITOR_YAML
        target.write_bytes(case.config if isinstance(case.config, bytes) else case.config.encode())
    if case.where == '.':
        cwd = places.root

    result = flux_monitor(*case.args, cwd=cwd, env=places.env(case.kubeconfig), input=case.stdin)

    stderr = result.stderr.decode('utf-8', 'replace')
    stdout = result.stdout.decode('utf-8', 'replace')
    assert 'Traceback' not in stdout, stdout
    assert result.returncode == case.code, f'exit {result.returncode}\n{stdout}\n{stderr}'
    if name.startswith('check-'):  # check prints a checklist; its failing item says why
        assert 'Traceback' not in stderr
        assert '✗ Flux CRDs are not served: install Flux (flux install or flux bootstrap)' in stdout, stdout
        return
    line = one_line_error(stderr)
    assert line.startswith(('flux-monitor: error: ', 'flux-monitor ')), line  # argparse: `flux-monitor wait: error:`
    for fragment in case.says:
        assert fragment in line, f'{fragment!r} not in {line!r}'


# -- not errors: input that is odd but must work -----------------------------------------------------------

def test_explain_takes_a_message_of_one_megabyte(places: Places) -> None:
    message = ('Deployment/apps/web dry-run failed (Invalid): Deployment.apps "web" is invalid: spec.selector: '
               'Invalid value: field is immutable ' + 'x' * 1_048_576).encode()

    started = time.monotonic()
    result = flux_monitor('explain', '--format', 'json', cwd=places.root, env=places.env(), input=message)
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert result.stderr == b''
    assert elapsed < 10, elapsed
    assert len(result.stdout) < 20_000  # what it prints is bounded, not the message echoed back
    assert b'"category": "immutable-field"' in result.stdout


@pytest.mark.parametrize('how', ['stdin', 'argument'])
def test_explain_takes_invalid_utf8(places: Places, how: str) -> None:
    message = b'Kustomization/apps/web dry-run failed: caf\xe9 \xff\xfe field is immutable'
    if how == 'stdin':
        result = flux_monitor('explain', cwd=places.root, env=places.env(), input=message)
    else:
        result = subprocess.run([*flux_monitor_command(), 'explain', os.fsdecode(message)], cwd=places.root,
                                env=places.env(), capture_output=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stderr == b''
    text = result.stdout.decode('utf-8')  # what it prints is valid UTF-8
    assert text.startswith('✗ immutable-field: ')


def flux_monitor_command() -> list[str]:
    import sys

    return [sys.executable, '-m', 'flux_monitor_hook']


def test_only_old_flux_api_versions_served(make_world: MakeWorld) -> None:
    """A cluster whose Flux serves only v1beta2 sources and Kustomizations and v2beta2 HelmReleases (what
    Flux 2.0-2.2 served): the wait follows those versions and lands."""
    world = make_world(old_apis=True)
    hidden = {f'{kind.group}/{version}' for kind in FLUX_KINDS if kind.old_versions for version in kind.versions}
    world.sandbox.server.hidden_versions.update(hidden)
    sha = world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    run = world.wait('--scope', 'all', '--format', 'json', '--timeout', '30s')

    check_verdict(run, 'succeeded', 0)
    assert sha in run.resource('GitRepository', 'flux-system')['revision']
    assert run.resource('HelmRelease', 'frontend')['state'] == 'landed'
    checked = subprocess.run([*flux_monitor_command(), 'check'], cwd=world.clone, env=world.env(),
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert 'GitRepository v1beta2' in checked.stdout and 'Kustomization v1beta2' in checked.stdout
    assert 'HelmRelease v2beta2' in checked.stdout


def test_the_config_file_is_read_from_the_repository_root_in_a_subdirectory(places: Places, tmp_path: Path
                                                                              ) -> None:
    clone = tmp_path / 'clone'
    git(tmp_path, 'clone', '--quiet', str(places.bare), str(clone))
    (clone / FLUX_MONITOR_YAML).write_text('timeout: 5m\noutput:\n  colour: never\n')

    result = flux_monitor('wait', cwd=clone / 'apps', env=places.env())

    assert result.returncode == USAGE
    line = one_line_error(result.stderr.decode())
    assert ".flux-monitor.yaml:3: unknown key 'colour' under output; did you mean 'colors'?" in line, line


def test_a_yaml_bomb_is_refused_quickly(places: Places, tmp_path: Path) -> None:
    clone = tmp_path / 'clone'
    git(tmp_path, 'clone', '--quiet', str(places.bare), str(clone))
    bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for index in range(1, 9):
        bomb.append(f'{chr(97 + index)}: &{chr(97 + index)} [' + ','.join([f'*{chr(96 + index)}'] * 9) + ']')
    bomb.append('timeout: *i')
    (clone / FLUX_MONITOR_YAML).write_text('\n'.join(bomb) + '\n')

    started = time.monotonic()
    result = flux_monitor('wait', cwd=clone, env=places.env())

    assert time.monotonic() - started < 10
    assert result.returncode == USAGE
    line = one_line_error(result.stderr.decode())
    assert "unknown key 'a'" in line, line


def test_sandbox_up_with_an_unbindable_port(places: Places) -> None:
    with Sandbox() as taken:
        port = taken.url.rsplit(':', 1)[1]
        result = flux_monitor('sandbox', 'up', '--repo', 'clone', '--cluster-path', 'c', '--kubeconfig',
                              str(places.root / 'sandbox.kubeconfig'), '--port', port, cwd=places.root,
                              env=places.env(), timeout=60)

    assert result.returncode == UNAVAILABLE, result.stderr
    line = one_line_error(result.stderr.decode())
    assert f'cannot listen on 127.0.0.1:{port}' in line and 'pick another --port or 0' in line

