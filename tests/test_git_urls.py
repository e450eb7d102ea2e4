from __future__ import annotations

import os

import pytest

from flux_monitor_hook.git_urls import normalize_repo_url
from flux_monitor_hook.git_urls import redact_text
from flux_monitor_hook.git_urls import redact_url

GITHUB = 'github.com/org/repo'


@pytest.mark.parametrize(
    ('url', 'expected'),
    (
        ('https://github.com/org/repo', GITHUB),
        ('https://github.com/org/repo.git', GITHUB),
        ('https://github.com/org/repo/', GITHUB),
        ('https://github.com/org/repo.git/', GITHUB),
        ('https://GitHub.COM/org/repo', GITHUB),
        ('https://github.com:443/org/repo', GITHUB),
        ('https://user:s3cret@github.com/org/repo', GITHUB),
        ('https://x-access-token:ghs_abc@github.com/org/repo.git', GITHUB),
        ('https://github.com/org/repo?ref=main#frag', GITHUB),
        ('http://github.com/org/repo', GITHUB),
        ('http://github.com:80/org/repo', GITHUB),
        ('ssh://git@github.com/org/repo.git', GITHUB),
        ('ssh://git@github.com:22/org/repo.git', GITHUB),
        ('ssh://github.com/org/repo', GITHUB),
        ('SSH://git@github.com/org/repo', GITHUB),
        ('git+ssh://git@github.com/org/repo.git', GITHUB),
        ('ssh+git://git@github.com/org/repo.git', GITHUB),
        ('git@github.com:org/repo.git', GITHUB),
        ('git@github.com:org/repo', GITHUB),
        ('git@github.com:/org/repo.git', GITHUB),
        ('github.com:org/repo.git', GITHUB),
        ('git://github.com/org/repo.git', GITHUB),
        ('git://github.com:9418/org/repo.git', GITHUB),
        ('  https://github.com/org/repo  ', GITHUB),
        ('https://github.com//org//repo', GITHUB),
        ('https://gitlab.com/group/sub/repo.git', 'gitlab.com/group/sub/repo'),
        ('git@gitlab.com:group/sub/repo.git', 'gitlab.com/group/sub/repo'),
        ('ssh://git@gitlab.example.com:2222/org/repo.git', 'gitlab.example.com:2222/org/repo'),
        ('https://gitlab.example.com:8443/org/repo', 'gitlab.example.com:8443/org/repo'),
        ('ssh://git@[::1]:2222/org/repo', '[::1]:2222/org/repo'),
        ('git@[::1]:org/repo', '[::1]/org/repo'),
        ('https://org@dev.azure.com/org/project/_git/repo', 'dev.azure.com/org/project/_git/repo'),
        ('git@ssh.dev.azure.com:v3/org/project/repo', 'dev.azure.com/org/project/_git/repo'),
        ('ssh://git@ssh.dev.azure.com/v3/org/project/repo', 'dev.azure.com/org/project/_git/repo'),
    ),
)
def test_normalize_remote(url, expected):
    assert normalize_repo_url(url) == expected


@pytest.mark.parametrize(
    ('left', 'right'),
    (
        ('ssh://git@github.com:22/org/repo.git', 'https://github.com/org/repo'),
        ('git@github.com:org/repo', 'https://user:token@github.com/org/repo.git/'),
        ('git+ssh://git@GITHUB.com/org/repo', 'http://github.com:80/org/repo'),
        ('git@github.com:org/repo.git', 'ssh://github.com/org/repo/'),
        ('git@ssh.dev.azure.com:v3/o/p/r', 'https://o@dev.azure.com/o/p/_git/r'),
    ),
)
def test_same_repository(left, right):
    assert normalize_repo_url(left) == normalize_repo_url(right)


@pytest.mark.parametrize(
    ('left', 'right'),
    (
        ('git@github.com:org/repo', 'git@gitlab.com:org/repo'),  # host
        ('https://github.com/org/repo', 'https://github.com/other/repo'),  # org
        ('https://github.com/org/repo', 'https://github.com/org/repo2'),  # repo
        ('https://github.com/org/repo', 'https://github.com/org/repo/sub'),
        ('https://github.com/org/repo', 'https://github.com/Org/Repo'),  # paths keep their case
        ('ssh://git@host:2222/org/repo', 'ssh://git@host/org/repo'),  # non-default port
        ('https://host:8443/org/repo', 'https://host/org/repo'),
        ('https://github.com/org/repo', 'https://github.com.evil.example/org/repo'),
        ('git@github.com:org/repo', 'git@github.com:org/repo-fork'),
    ),
)
def test_different_repository(left, right):
    assert normalize_repo_url(left) != normalize_repo_url(right)


def test_normalize_local_paths(tmp_path, monkeypatch):
    repo = tmp_path / 'fleet'
    (repo / '.git').mkdir(parents=True)
    bare = tmp_path / 'fleet.git'
    bare.mkdir()
    link = tmp_path / 'link'
    link.symlink_to(repo)
    monkeypatch.chdir(tmp_path)
    expected = 'file://' + os.path.realpath(repo)
    for spelling in (
        str(repo),
        f'{repo}/',
        f'{repo}/.git',
        f'{repo}/.git/',
        str(link),
        f'{tmp_path}/x/../fleet',
        './fleet',
        'fleet',
        f'file://{repo}',
        f'file://{repo}/',
        f'file://localhost{repo}',
        f'file://{repo}/.git',
    ):
        assert normalize_repo_url(spelling) == expected, spelling
    # A bare repository named *.git is another directory, not the same repository.
    assert normalize_repo_url(str(bare)) == 'file://' + os.path.realpath(bare)
    assert normalize_repo_url(str(bare)) != expected
    assert normalize_repo_url(str(tmp_path / 'other')) != expected


def test_file_url_is_percent_decoded(tmp_path):
    spaced = tmp_path / 'my fleet'
    spaced.mkdir()
    assert normalize_repo_url(f'file://{tmp_path}/my%20fleet') == normalize_repo_url(str(spaced))


@pytest.mark.parametrize(
    ('url', 'message'),
    (
        ('', 'empty repository URL'),
        ('   ', 'empty repository URL'),
        ('https://', 'no host'),
        ('https:///org/repo', 'no host'),
        ('ssh://git@host:port/org/repo', 'bad port'),
        ('file://server/share/repo', 'remote host'),
    ),
)
def test_normalize_rejects(url, message):
    with pytest.raises(ValueError, match=message):
        normalize_repo_url(url)


def test_normalize_error_does_not_leak_credentials():
    with pytest.raises(ValueError) as excinfo:
        normalize_repo_url('https://user:hunter2secret@host:port/org/repo')
    assert 'hunter2secret' not in str(excinfo.value)


@pytest.mark.parametrize(
    ('url', 'expected'),
    (
        ('https://user:tok3n@github.com/org/repo', 'https://user:***@github.com/org/repo'),
        ('https://tok3n@github.com/org/repo', 'https://***@github.com/org/repo'),
        ('https://tok3n@github.com', 'https://***@github.com'),
        ('http://user:tok3n@host:8080/x', 'http://user:***@host:8080/x'),
        (
            'https://oauth2:glpat-tok3n@gitlab.com/org/fleet.git',
            'https://oauth2:***@gitlab.com/org/fleet.git',
        ),
        (
            'https://x-access-token:ghs_tok3n@github.com/org/r',
            'https://x-access-token:***@github.com/org/r',
        ),
        ('https://user:p@ss@host/x', 'https://user:***@host/x'),  # unescaped @ in the password
        ('https://user:p%40ss@host/x', 'https://user:***@host/x'),
        # GitHub's old form puts the token in the user name.
        ('https://ghp_tok3n:x-oauth-basic@github.com/o/r', 'https://***:***@github.com/o/r'),
        ('https://ghp_tok3n@github.com/o/r', 'https://***@github.com/o/r'),
        (
            'https://host/repo?access_token=tok3n&ref=main',
            'https://host/repo?access_token=***&ref=main',
        ),
        ('https://bucket.s3/x?X-Amz-Signature=tok3n', 'https://bucket.s3/x?X-Amz-Signature=***'),
        ('ssh://git:tok3n@github.com/org/repo', 'ssh://git:***@github.com/org/repo'),
        # ssh user names are not secrets.
        ('ssh://git@github.com/org/repo', 'ssh://git@github.com/org/repo'),
        ('git+ssh://git@github.com/org/repo', 'git+ssh://git@github.com/org/repo'),
        ('git@github.com:org/repo.git', 'git@github.com:org/repo.git'),
        ('https://github.com/org/repo', 'https://github.com/org/repo'),
        ('/srv/git/fleet.git', '/srv/git/fleet.git'),
        ('not a url', 'not a url'),
        ('', ''),
    ),
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected
    assert 'tok3n' not in redact_url(url)


# Tokens as providers issue them; none may survive in any output, even in part.
TOKENS = (
    'ghp_16C7e42F292c6912E7710c838347Ae178B4a',
    'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ',
    'glpat-xXxXxXxXxXxXxXxXxXxX',
    'p@ss:w0rd!with$chars',
    'Zm9vYmFyYmF6cXV4cXV1eA',
)


@pytest.mark.parametrize('token', TOKENS)
@pytest.mark.parametrize(
    'template',
    (
        'https://{token}@github.com/org/repo',
        'https://user:{token}@github.com/org/repo',
        'https://oauth2:{token}@gitlab.com/org/repo.git',
        'https://{token}:x-oauth-basic@github.com/org/repo',
        'ssh://git:{token}@github.com/org/repo',
        'failed to checkout and determine revision: '
        "unable to clone 'https://x:{token}@github.com/o/r': authentication required",
        'fatal: could not read from https://{token}@github.com/o/r\nretrying https://u:{token}@h/x',
        'GET https://host/api?private_token={token}&page=2 failed',
        '"url": "https://user:{token}@example.com/r.git"',
    ),
)
def test_nothing_of_a_token_survives(token, template):
    text = template.format(token=token)
    for output in (redact_text(text), redact_url(text)):
        # Any 6 characters in a row of the token would already be a leak worth noticing.
        for start in range(len(token) - 5):
            chunk = token[start:start + 6]
            assert chunk not in output or chunk in template, (text, output)


def test_redact_text_keeps_surrounding_text():
    text = (
        "unable to clone 'https://user:tok3n@github.com/org/fleet': authentication required; "
        'see git@github.com:org/fleet and https://github.com/org/fleet'
    )
    assert redact_text(text) == (
        "unable to clone 'https://user:***@github.com/org/fleet': authentication required; "
        'see git@github.com:org/fleet and https://github.com/org/fleet'
    )


def test_redact_text_several_urls_on_one_line():
    text = 'from https://a:tok3n@one.example/x to https://tok3n@two.example/y'
    assert redact_text(text) == 'from https://a:***@one.example/x to https://***@two.example/y'


def test_redact_is_idempotent():
    once = redact_text('https://user:tok3n@host/x https://tok3n@host')
    assert redact_text(once) == once
