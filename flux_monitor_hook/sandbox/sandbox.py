"""`Sandbox`: the API server, the store and the simulated Flux controllers, started and stopped together."""
from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from flux_monitor_hook.sandbox import kubeconfig
from flux_monitor_hook.sandbox.apiserver import ApiServer
from flux_monitor_hook.sandbox.apiserver import Rule
from flux_monitor_hook.sandbox.faults import FaultInjector
from flux_monitor_hook.sandbox.faults import parse_fault_spec
from flux_monitor_hook.sandbox.kinds import Registry
from flux_monitor_hook.sandbox.kinds import ResourceType
from flux_monitor_hook.sandbox.store import Store

Obj = dict[str, Any]


class Sandbox:
    """A local Kubernetes API with simulated Flux, for tests, the demo and `flux-monitor sandbox up`.

    with Sandbox(repo=bare_repo, cluster_path='clusters/staging') as sb:
        sb.kubeconfig_path, sb.store, sb.faults, sb.wait_idle()
    """

    def __init__(
        self, repo: str | Path | None = None, cluster_path: str = '', *, branch: str = 'main', port: int = 0,
        speed: float = 1.0, tls: bool = False, faults: str | FaultInjector = '', strict_kinds: bool = False,
        old_apis: bool = False, seed: int = 0, kubeconfig_path: str | Path | None = None,
        bootstrap: bool = True, flux_instance: bool = False, history_limit: int = 20000,
        bookmark_interval: float = 5.0, use_kubectl: bool | None = None, git_interval: str | None = None,
        remotes: dict[str, str] | None = None,
    ) -> None:
        self.repo = str(repo) if repo is not None else None
        self.cluster_path = cluster_path
        self.branch = branch
        self.speed = speed
        self.seed = seed
        self.bootstrap = bootstrap and self.repo is not None
        self.flux_instance = flux_instance
        self.git_interval = git_interval
        self.remotes = dict(remotes or {})
        self.use_kubectl = shutil.which('kubectl') is not None if use_kubectl is None else use_kubectl
        self.registry = Registry.default(old_apis=old_apis)
        self.store = Store(self.registry, history_limit=history_limit, seed=seed, strict_kinds=strict_kinds)
        self.faults = faults if isinstance(faults, FaultInjector) else parse_fault_spec(faults)
        self._tls = kubeconfig.make_tls() if tls else None
        self.server = ApiServer(self.store, port=port, tls_context=self._tls.server_context if self._tls else None,
                                faults=self.faults, bookmark_interval=bookmark_interval)
        self.token = secrets.token_hex(16)
        self.server.add_token(self.token)
        self._workdir = Path(tempfile.mkdtemp(prefix='flux-sandbox-'))
        self.kubeconfig_path = Path(kubeconfig_path) if kubeconfig_path else self._workdir / 'kubeconfig'
        self.controllers: Any = None

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        from flux_monitor_hook.sandbox.controllers import Controllers

        self._create_namespace('default')
        self.controllers = Controllers(self.store, speed=self.speed, workdir=self._workdir / 'controllers',
                                       use_kubectl=self.use_kubectl, remotes=self.remotes)
        self.controllers.start()
        if self.bootstrap:
            assert self.repo is not None
            from flux_monitor_hook.sandbox import bootstrap

            bootstrap.install(self.store, repo=self.repo, branch=self.branch, cluster_path=self.cluster_path,
                              flux_instance=self.flux_instance, git_interval=self.git_interval)
        self.server.start()
        self.write_kubeconfig(self.kubeconfig_path, self.token)

    def stop(self) -> None:
        self.server.stop()
        if self.controllers is not None:
            self.controllers.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    # -- access ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ca_pem(self) -> bytes | None:
        return self._tls.ca_pem if self._tls else None

    def write_kubeconfig(self, path: Path, token: str, namespace: str = 'flux-system') -> Path:
        kubeconfig.write_kubeconfig(path, kubeconfig.kubeconfig_document(self.url, token, self.ca_pem, namespace))
        return path

    def add_token(self, rules: tuple[Rule, ...] | None = None, user: str = 'system:serviceaccount:test:monitor',
                  kubeconfig_path: Path | None = None, token: str | None = None) -> str:
        """A new bearer token (random unless given) limited to rules (None: everything); writes a kubeconfig
        for it if asked."""
        token = token or secrets.token_hex(16)
        self.server.add_token(token, user, rules)
        if kubeconfig_path is not None:
            self.write_kubeconfig(kubeconfig_path, token)
        return token

    def revoke_token(self, token: str) -> None:
        self.server.revoke_token(token)

    def resource_type(self, api_version: str, kind: str) -> ResourceType:
        return self.store.resource_type_for(api_version, kind)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj:
        return self.store.get(self.resource_type(api_version, kind), namespace, name)

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        return self.store.list_objects(self.resource_type(api_version, kind), namespace)[0]

    def apply(self, obj: Obj) -> Obj:
        resource_type = self.resource_type(obj['apiVersion'], obj['kind'])
        return self.store.apply(resource_type, obj)[0]

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj:
        return self.store.delete(self.resource_type(api_version, kind), namespace, name)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once the controllers have nothing left to do but periodic re-syncs."""
        return bool(self.controllers.wait_idle(timeout)) if self.controllers else True

    def _create_namespace(self, name: str) -> None:
        namespaces = self.registry.by_path('', 'v1', 'namespaces')
        assert namespaces is not None
        if self.store.try_get(namespaces, None, name) is None:
            self.store.create(namespaces, {'metadata': {'name': name}})
