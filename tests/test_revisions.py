from __future__ import annotations

import pytest

from flux_monitor_hook.revisions import Revision
from flux_monitor_hook.revisions import chart_revision_commit_prefix
from flux_monitor_hook.revisions import extract_hash
from flux_monitor_hook.revisions import format_git_revision
from flux_monitor_hook.revisions import parse_revision
from flux_monitor_hook.revisions import same_commit
from flux_monitor_hook.revisions import short_revision

SHA = '5394cb7f48332b2de7c17dd8b8384bbc84b7e738'
SHA256 = '95e386f421272710c4cedbbd8607dbbaa019d500e7a5a0b6720bc7bebefc7bf2'


@pytest.mark.parametrize(
    ('revision', 'expected'),
    (
        # The cases of pkg git/utils.go ExtractHashFromRevision's documentation.
        (f'main@sha1:{SHA}', SHA),
        (f'feature/branch@sha1:{SHA}', SHA),
        (f'sha1:{SHA}', SHA),
        (f'main/{SHA}', SHA),
        (f'feature/branch/{SHA}', SHA),
        (SHA, SHA),
        (f'refs/heads/main@sha1:{SHA}', SHA),
        (f'latest@sha256:{SHA256}', SHA256),
        ('6.0.3+4e5cbb7b97d0', '6.0.3+4e5cbb7b97d0'),
        ('', ''),
    ),
)
def test_extract_hash(revision, expected):
    assert extract_hash(revision) == expected


@pytest.mark.parametrize(
    ('revision', 'expected'),
    (
        (f'main@sha1:{SHA}', Revision('main', 'sha1', SHA)),
        (f'refs/heads/main@sha1:{SHA}', Revision('refs/heads/main', 'sha1', SHA)),
        (f'refs/tags/v1.0.0@sha1:{SHA}', Revision('refs/tags/v1.0.0', 'sha1', SHA)),
        (f'v1.0.0@sha1:{SHA}', Revision('v1.0.0', 'sha1', SHA)),
        (f'feature/branch@sha1:{SHA}', Revision('feature/branch', 'sha1', SHA)),
        (f'sha1:{SHA}', Revision(None, 'sha1', SHA)),
        (f'main/{SHA}', Revision('main', None, SHA)),
        (f'HEAD/{SHA}', Revision('HEAD', None, SHA)),
        (f'feature/branch/{SHA}', Revision('feature/branch', None, SHA)),
        (SHA, Revision(None, None, SHA)),
        (f'latest@sha256:{SHA256}', Revision('latest', 'sha256', SHA256)),
        (f'6.6.1@sha256:{SHA256}', Revision('6.6.1', 'sha256', SHA256)),
        (f'sha256:{SHA256}', Revision(None, 'sha256', SHA256)),
        (f'latest/{SHA256}', Revision('latest', None, SHA256)),
        # A 64-hex git commit: pkg Hash.Algorithm() only names 40-hex ones.
        (f'main@<unknown>:{SHA256}', Revision('main', '<unknown>', SHA256)),
        ('6.0.3+1', Revision(None, None, '6.0.3+1')),
        ('6.0.3+4e5cbb7b97d0', Revision(None, None, '6.0.3+4e5cbb7b97d0')),
        ('6.0.3+4e5cbb7b97d0.1', Revision(None, None, '6.0.3+4e5cbb7b97d0.1')),
    ),
)
def test_parse_revision(revision, expected):
    parsed = parse_revision(revision)
    assert parsed == expected
    assert parsed.digest == extract_hash(revision)


@pytest.mark.parametrize('revision', ('', 'main@sha1:', 'main/', 'sha1:'))
def test_parse_revision_rejects_empty_hash(revision):
    with pytest.raises(ValueError, match='not a Flux revision'):
        parse_revision(revision)


@pytest.mark.parametrize(
    ('ref_name', 'sha', 'expected'),
    (
        ('main', SHA, f'main@sha1:{SHA}'),
        ('v0.1.0', SHA, f'v0.1.0@sha1:{SHA}'),
        ('refs/heads/main', SHA, f'refs/heads/main@sha1:{SHA}'),
        (None, SHA, f'sha1:{SHA}'),
        ('', SHA, f'sha1:{SHA}'),
        ('main', SHA.upper(), f'main@sha1:{SHA}'),
        ('main', SHA256, f'main@<unknown>:{SHA256}'),
    ),
)
def test_format_git_revision(ref_name, sha, expected):
    assert format_git_revision(ref_name, sha) == expected
    assert parse_revision(expected).digest == sha.lower()


@pytest.mark.parametrize('sha', ('', '5394cb7', SHA + '0', 'g' * 40, f'sha1:{SHA}'))
def test_format_git_revision_rejects_non_sha(sha):
    with pytest.raises(ValueError, match='not a full git commit SHA'):
        format_git_revision('main', sha)


@pytest.mark.parametrize(
    ('revision', 'expected'),
    (
        (f'main@sha1:{SHA}', 'main@sha1:5394cb7'),
        (f'refs/heads/main@sha1:{SHA}', 'refs/heads/main@sha1:5394cb7'),
        (f'sha1:{SHA}', 'sha1:5394cb7'),
        (f'main/{SHA}', 'main/5394cb7'),
        (f'HEAD/{SHA}', 'HEAD/5394cb7'),
        (SHA, '5394cb7'),
        (f'latest@sha256:{SHA256}', 'latest@sha256:95e386f42127'),
        (f'sha256:{SHA256}', 'sha256:95e386f42127'),
        (f'main@<unknown>:{SHA256}', 'main@<unknown>:95e386f'),
        ('6.0.3+4e5cbb7b97d0', '6.0.3+4e5cbb7b97d0'),
        ('6.0.3+1', '6.0.3+1'),
        ('main@sha1:abc', 'main@sha1:abc'),
        ('', ''),
    ),
)
def test_short_revision(revision, expected):
    assert short_revision(revision) == expected


@pytest.mark.parametrize(
    ('chart_version', 'expected'),
    (
        ('6.0.3+4e5cbb7b97d0', '4e5cbb7b97d0'),
        ('6.0.3+4e5cbb7b97d0.1', '4e5cbb7b97d0'),
        ('6.6.1+0cc9a8446c95', '0cc9a8446c95'),
        ('6.0.3+1', None),
        ('6.0.3', None),
        ('6.0.3+4e5cbb7b97d', None),  # 11 digits
        ('6.0.3+4e5cbb7b97d0a', None),  # 13 digits
        ('6.0.3+build.4e5cbb7b97d0', None),
        ('6.0.3+zzzzzzzzzzzz', None),
        ('1.0.0-rc.1+4e5cbb7b97d0', '4e5cbb7b97d0'),
    ),
)
def test_chart_revision_commit_prefix(chart_version, expected):
    assert chart_revision_commit_prefix(chart_version) == expected


def test_chart_prefix_matches_the_commit():
    prefix = chart_revision_commit_prefix(f'6.0.3+{SHA[:12]}')
    assert prefix is not None
    assert SHA.startswith(prefix)


@pytest.mark.parametrize(
    ('revision', 'sha', 'expected'),
    (
        (f'main@sha1:{SHA}', SHA, True),
        (f'main/{SHA}', SHA, True),
        (f'sha1:{SHA}', SHA.upper(), True),
        (f'main@sha1:{SHA}', SHA[:7], False),
        (f'main@sha1:{SHA}', '0' * 40, False),
        (f'main@sha1:{SHA}', '', False),
        ('', SHA, False),
    ),
)
def test_same_commit(revision, sha, expected):
    assert same_commit(revision, sha) is expected
