"""`flux-monitor demo`: the whole flow against a local Flux sandbox, no cluster needed.

It generates a GitOps repository (infrastructure, then apps through dependsOn, and a HelmRelease from a chart
in the repository), serves it to the sandbox as the remote, pushes a change with real git and runs the very
same wait path as `flux-monitor wait`. Scenarios show each kind of outcome.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flux_monitor_hook import exit_codes
from flux_monitor_hook.config import Config
from flux_monitor_hook.errors import UserError

SPEED = 10.0  # sandbox time runs ten times faster than real time


@dataclass(frozen=True)
class Scenario:
    name: str
    story: str
    expected: int
    change: dict[str, str | None]  # files the pushed commit writes (None deletes)
    timeout: str = '60s'
    prepare: Callable[[object], None] | None = None  # runs against the sandbox before the push


def _deployment(selector: str = 'podinfo', image: str = '6.5.0', annotations: str = '') -> str:
    return f'''apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: demo
{annotations}spec:
  replicas: 2
  selector:
    matchLabels:
      app: {selector}
  template:
    metadata:
      labels:
        app: {selector}
    spec:
      containers:
        - name: podinfo
          image: ghcr.io/stefanprodan/podinfo:{image}
'''


def _release(values: str = '') -> str:
    return f'''apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: frontend
  namespace: demo
spec:
  interval: 10m
  chart:
    spec:
      chart: ./charts/frontend
      reconcileStrategy: Revision
      sourceRef:
        kind: GitRepository
        name: flux-system
        namespace: flux-system
  values:
    replicaCount: 2
{values}'''


def _kustomization(name: str, path: str, depends_on: str | None = None, timeout: str = '2m') -> str:
    depends = f'  dependsOn:\n    - name: {depends_on}\n' if depends_on else ''
    return f'''apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}
  namespace: flux-system
spec:
  interval: 10m
  retryInterval: 1m
  timeout: {timeout}
{depends}  path: {path}
  prune: true
  wait: true
  sourceRef:
    kind: GitRepository
    name: flux-system
'''


REPOSITORY: dict[str, str] = {
    'clusters/demo/infrastructure.yaml': _kustomization('infrastructure', './infrastructure'),
    'clusters/demo/apps.yaml': _kustomization('apps', './apps', depends_on='infrastructure', timeout='30s'),
    'infrastructure/namespace.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n',
    'infrastructure/redis.yaml': '''apiVersion: apps/v1
kind: Deployment
metadata:
  name: redis
  namespace: demo
spec:
  selector:
    matchLabels:
      app: redis
  template:
    metadata:
      labels:
        app: redis
    spec:
      containers:
        - name: redis
          image: redis:7.2
''',
    'apps/podinfo.yaml': _deployment(),
    'apps/frontend.yaml': _release(),
    'charts/frontend/Chart.yaml': 'apiVersion: v2\nname: frontend\nversion: 1.4.0\nappVersion: "1.4.0"\n',
    'charts/frontend/values.yaml': 'replicaCount: 1\n',
    'charts/frontend/templates/NOTES.txt': 'frontend demo chart\n',
}


def _revoke_credentials(sandbox: object) -> None:
    from flux_monitor_hook.sandbox import Sandbox

    assert isinstance(sandbox, Sandbox)
    repository = sandbox.get('source.toolkit.fluxcd.io/v1', 'GitRepository', 'flux-system', 'flux-system')
    repository['spec']['secretRef'] = {'name': 'flux-system'}
    sandbox.apply(repository)


SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in (
    Scenario('success', 'a new podinfo image and chart values: everything lands', exit_codes.SUCCESS,
             {'apps/podinfo.yaml': _deployment(image='6.5.1'), 'apps/frontend.yaml': _release('    tier: web\n')}),
    Scenario('immutable-field', "the Deployment's selector changes, which Kubernetes refuses", exit_codes.FAILED,
             {'apps/podinfo.yaml': _deployment(selector='podinfo-v2')}),
    Scenario('dependency-failure', 'infrastructure breaks, so apps is blocked behind it', exit_codes.FAILED,
             {'infrastructure/kustomization.yaml': 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: '
              'Kustomization\nresources:\n  - namespace.yaml\n  - redis.yaml\n  - missing.yaml\n'}),
    Scenario('health-timeout', 'the new podinfo never becomes ready, so the health check times out',
             exit_codes.FAILED, {'apps/podinfo.yaml': _deployment(
                 image='6.5.2', annotations='  annotations:\n    sandbox.flux-monitor.io/rollout: never\n')}),
    Scenario('helm-upgrade-failure', 'the chart upgrade fails and, with no retries, the release stalls',
             exit_codes.FAILED, {'apps/frontend.yaml': _release(
                 '    sandboxFail: \'cannot patch "frontend" with kind Deployment: Deployment.apps "frontend" is '
                 'invalid: spec.template.spec.containers[0].image: Required value\'\n')}),
    Scenario('source-auth-failure', "Flux's deploy key was revoked, so the commit is never fetched",
             exit_codes.FAILED, {'apps/podinfo.yaml': _deployment(image='6.5.3')}, prepare=_revoke_credentials),
    Scenario('timeout', 'the rollout is slow and the wait gives up first', exit_codes.TIMEOUT,
             {'apps/podinfo.yaml': _deployment(image='6.5.4', annotations='  annotations:\n    '
                                                'sandbox.flux-monitor.io/rollout-seconds: "600"\n'),
              'clusters/demo/apps.yaml': _kustomization('apps', './apps', depends_on='infrastructure',
                                                        timeout='15m')}, timeout='8s'),
)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--scenario', default='success', choices=(*SCENARIOS, 'all'),
                        help='What the pushed change does (default: success; all runs each in turn).')
    parser.add_argument('--format', choices=('structured', 'simple', 'json'))
    parser.add_argument('--color', choices=('auto', 'always', 'never'))
    parser.add_argument('--keep', action='store_true', help='Keep the generated repositories and print where.')


def _git(cwd: Path, *args: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith('GIT_')}
    env.update(GIT_AUTHOR_NAME='flux-monitor demo', GIT_AUTHOR_EMAIL='demo@flux-monitor.invalid',
               GIT_COMMITTER_NAME='flux-monitor demo', GIT_COMMITTER_EMAIL='demo@flux-monitor.invalid',
               GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM='1', GIT_TERMINAL_PROMPT='0')
    result = subprocess.run(['git', *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise UserError(f'demo: git {args[0]} failed: {result.stderr.strip()}', exit_codes.UNAVAILABLE)
    return result.stdout.strip()


def write_files(root: Path, files: Mapping[str, str | None]) -> None:
    """Write files under root (None deletes one): what a commit changes."""
    for name, content in files.items():
        path = root / name
        if content is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _make_repositories(workdir: Path) -> tuple[Path, Path]:
    """A bare repository that plays the remote Flux fetches from, and a clone to push from."""
    seed = workdir / 'seed'
    seed.mkdir()
    _git(seed, 'init', '-q', '--initial-branch=main')
    write_files(seed, REPOSITORY)
    _git(seed, 'add', '--all')
    _git(seed, 'commit', '-q', '-m', 'Flux demo: infrastructure, apps and a chart')
    remote = workdir / 'fleet.git'
    _git(workdir, 'clone', '-q', '--bare', str(seed), str(remote))
    clone = workdir / 'fleet'
    _git(workdir, 'clone', '-q', str(remote), str(clone))
    shutil.rmtree(seed)
    return remote, clone


def run_scenario(scenario: Scenario, config: Config, *, keep: bool = False) -> int:
    from flux_monitor_hook.commands import wait
    from flux_monitor_hook.sandbox import Sandbox

    if shutil.which('git') is None:
        raise UserError('the demo needs git on PATH; install git and run it again', exit_codes.UNAVAILABLE)
    workdir = Path(tempfile.mkdtemp(prefix='flux-monitor-demo-'))
    try:
        remote, clone = _make_repositories(workdir)
        print(f'▶ demo scenario {scenario.name}: {scenario.story}', flush=True)
        with Sandbox(repo=remote, cluster_path='clusters/demo', speed=SPEED,
                     kubeconfig_path=workdir / 'kubeconfig') as sandbox:
            if not sandbox.wait_idle(60):
                raise UserError('demo: the sandbox did not settle within 60 s', exit_codes.UNAVAILABLE)
            if scenario.prepare is not None:
                scenario.prepare(sandbox)
            write_files(clone, scenario.change)
            _git(clone, 'add', '--all')
            _git(clone, 'commit', '-q', '-m', f'demo: {scenario.story}')
            _git(clone, 'push', '-q', 'origin', 'main')
            print(f'▶ pushed {_git(clone, "rev-parse", "--short", "HEAD")} to {remote}', flush=True)
            settings = config.with_overrides(**{'timeout': scenario.timeout,
                                                'cluster.kubeconfig': str(sandbox.kubeconfig_path),
                                                'scope': 'all'})
            context = wait.git_context(argparse.Namespace(repo_path=clone, branch=None, remote=None, revision=None),
                                       settings)
            return wait.follow_target(context, settings)
    finally:
        if keep:
            print(f'▶ repositories kept in {workdir}')
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    config = Config().with_overrides(**{'output.format': args.format, 'output.colors': args.color})
    if args.scenario != 'all':
        return run_scenario(SCENARIOS[args.scenario], config, keep=args.keep)
    results = []
    for scenario in SCENARIOS.values():
        started = time.monotonic()
        code = run_scenario(scenario, config, keep=args.keep)
        results.append((scenario, code, time.monotonic() - started))
        print(flush=True)
    print('| scenario | expected exit | exit | seconds |\n|---|---|---|---|')
    for scenario, code, seconds in results:
        mark = '' if code == scenario.expected else ' ✗'
        print(f'| {scenario.name} | {scenario.expected} | {code}{mark} | {seconds:.1f} |')
    return exit_codes.SUCCESS if all(code == s.expected for s, code, _ in results) else exit_codes.FAILED
