"""`flux-monitor sandbox up` as a real process: what it prints and writes, how it stops, how it refuses input."""
from __future__ import annotations

import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes import config

from tests.sandbox.fleet import Fleet
from tests.sandbox.fleet import configmap
from tests.sandbox.fleet import manifests
from tests.sandbox.fleet import wait_for

CLUSTER = 'clusters/test'


def _command() -> list[str]:
    script = Path(sys.executable).parent / 'flux-monitor'
    return [str(script)] if script.exists() else [sys.executable, '-m', 'flux_monitor_hook']


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet.create(tmp_path, {f'{CLUSTER}/config.yaml': manifests(configmap('settings', colour='blue'))})


class Running:
    """A `sandbox up` process with its stdout read line by line in the background."""

    def __init__(self, args: list[str]) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith(('KUBE', 'GIT_'))}
        self.process = subprocess.Popen([*_command(), 'sandbox', 'up', *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip('\n'))

    def read_until(self, prefix: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.process.kill()
                raise AssertionError(f'no line starting {prefix!r}; got {self.stdout}; stderr: '
                                     f'{self.process.communicate()[1]}') from None
            self.stdout.append(line)
            if line.startswith(prefix):
                return line

    def stop(self, signum: int) -> tuple[int, str]:
        self.process.send_signal(signum)
        _, stderr = self.process.communicate(timeout=20)
        return self.process.returncode, stderr


@pytest.fixture
def started(fleet: Fleet, tmp_path: Path) -> Iterator[tuple[Running, Path]]:
    kubeconfig = tmp_path / 'home' / 'kubeconfig'
    running = Running(['--repo', str(fleet.bare), '--cluster-path', CLUSTER, '--kubeconfig', str(kubeconfig),
                       '--speed', '50'])
    try:
        yield running, kubeconfig
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.communicate()


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_up_serves_until_a_signal(started: tuple[Running, Path], fleet: Fleet, signum: int) -> None:
    running, kubeconfig = started
    address = running.read_until('flux sandbox API server at ')
    url = address.rpartition(' ')[2]
    assert url.startswith('http://127.0.0.1:')
    assert running.read_until('kubeconfig written to ') == \
        f'kubeconfig written to {kubeconfig} (context flux-sandbox)'
    assert running.read_until('export KUBECONFIG=') == f'export KUBECONFIG={kubeconfig}'

    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600, 'the kubeconfig holds a bearer token'
    document = yaml.safe_load(kubeconfig.read_text())
    assert document['current-context'] == 'flux-sandbox'
    assert document['clusters'][0]['cluster']['server'] == url

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    custom = client.CustomObjectsApi(client.ApiClient(configuration))

    def landed() -> bool:
        ks = custom.get_namespaced_custom_object('kustomize.toolkit.fluxcd.io', 'v1', 'flux-system',
                                                 'kustomizations', 'flux-system')
        return (ks.get('status') or {}).get('lastAppliedRevision') == fleet.revision()

    wait_for(landed, 'the bootstrap Kustomization to apply the fleet')

    code, stderr = running.stop(signum)
    assert code == 0
    assert 'Traceback' not in stderr
    assert stderr.strip().splitlines()[-1] == 'flux sandbox stopped'


@pytest.mark.parametrize('args, message', [
    (['--repo', '{missing}'], "--repo '{missing}' is not a local git repository"),
    (['--repo', '{plain}'], "--repo '{plain}' is not a local git repository"),
    (['--faults', 'bogus'], "--faults: bad fault 'bogus': unknown fault 'bogus'"),
    (['--speed', '0'], '--speed 0.0 must be above 0'),
], ids=['missing-repo', 'plain-directory', 'bad-faults', 'zero-speed'])
def test_bad_input_is_one_line_and_exit_3(fleet: Fleet, tmp_path: Path, args: list[str], message: str) -> None:
    missing = str(tmp_path / 'nowhere.git')
    plain = tmp_path / 'plain'
    plain.mkdir()
    args = [arg.replace('{missing}', missing).replace('{plain}', str(plain)) for arg in args]
    message = message.replace('{missing}', missing).replace('{plain}', str(plain))
    base = {'--repo': str(fleet.bare), '--cluster-path': CLUSTER, '--kubeconfig': str(tmp_path / 'kubeconfig')}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    env = {key: value for key, value in os.environ.items() if not key.startswith(('KUBE', 'GIT_'))}
    result = subprocess.run([*_command(), 'sandbox', 'up', *(x for pair in base.items() for x in pair)],
                            capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode == 3
    assert result.stdout == ''
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('flux-monitor: error: ' + message), lines[0]
    assert not (tmp_path / 'kubeconfig').exists()
