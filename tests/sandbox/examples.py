"""The real Flux layouts in ../shared/flux-examples, served to sandboxes (shared by several test modules)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED
from tests.sandbox import gitutil
from tests.sandbox.fleet import Fleet
from tests.sandbox.fleet import configmap
from tests.sandbox.fleet import manifests

EXAMPLES = SHARED / 'flux-examples'
KUSTOMIZE_HELM = 'flux2-kustomize-helm-example'
MULTI_TENANCY = 'flux2-multi-tenancy'
TENANT_URL = 'https://github.com/fluxcd/flux2-multi-tenancy'

requires_examples = pytest.mark.skipif(not EXAMPLES.is_dir(),
                                       reason=f'{EXAMPLES} is absent (../shared not checked out)')


def example_fleet(name: str, root: Path) -> Fleet:
    return Fleet.from_dir(EXAMPLES / name, root / name)


def tenant_remote(root: Path) -> Path:
    """What the multi-tenancy tenants' GitRepository fetches: a `dev-team` branch with a manifest per cluster."""
    work = gitutil.init_repo(root / 'dev-team', 'dev-team')
    gitutil.commit(work, 'dev-team apps', {
        'staging/config.yaml': manifests(configmap('team-settings', 'apps', stage='staging')),
        'production/config.yaml': manifests(configmap('team-settings', 'apps', stage='production')),
    })
    return gitutil.bare_clone(work, root / 'dev-team.git')


def multi_tenancy_remotes(root: Path) -> dict[str, str]:
    return {TENANT_URL: str(tenant_remote(root))}
