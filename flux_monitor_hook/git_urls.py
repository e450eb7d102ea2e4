"""Compare git remote URLs across their spellings, and keep credentials in them out of output.

A GitRepository's `spec.url` is `https://...` or `ssh://...` while the local remote is often the
scp-like `git@host:org/repo`; both must be recognised as the same repository.
"""
from __future__ import annotations

import os.path
import re
import urllib.parse
from pathlib import Path

_DEFAULT_PORTS = {'ssh': 22, 'https': 443, 'http': 80, 'git': 9418}
_SSH_SCHEMES = frozenset(('ssh', 'git+ssh', 'ssh+git'))
_SCHEME = re.compile(r'^([A-Za-z][A-Za-z0-9+.-]*)://')
# git's rule: `[user@]host:path` is scp-like when no `/` comes before the first `:`.
_SCP_LIKE = re.compile(r'^(?:[^@/]*@)?(\[[^\]/]+\]|[^:/\[\]]+):(.*)$', re.DOTALL)
_WINDOWS_DRIVE = re.compile(r'^[A-Za-z]:[\\/]')


def normalize_repo_url(url: str) -> str:
    """A key under which every spelling of the same repository compares equal.

    Remote URLs become `host[:port]/path` (scheme, user info, default port, trailing slashes and
    one `.git` suffix dropped, host lowercased; the path keeps its case, as git servers may be case
    sensitive). Local paths and file:// URLs become `file://<real absolute path>`, with a trailing
    `/.git` dropped so a work tree and its git directory match. Raises ValueError when `url` is
    empty, names no host or has a bad port; its message has any credentials redacted.
    """
    text = url.strip()
    if not text:
        raise ValueError('empty repository URL')
    scheme_match = _SCHEME.match(text)
    if scheme_match:
        scheme = scheme_match[1].lower()
        if scheme == 'file':
            return _normalize_file_url(text)
        return _normalize_remote_url(text, scheme)
    scp_match = _SCP_LIKE.match(text)
    if scp_match and not _WINDOWS_DRIVE.match(text):
        return _join_remote(scp_match[1].lower(), None, scp_match[2])
    return _normalize_local_path(text)


def _normalize_remote_url(url: str, scheme: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host:
        raise ValueError(f'no host in repository URL {redact_url(url)!r}')
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f'bad port in repository URL {redact_url(url)!r}') from None
    default_port = _DEFAULT_PORTS.get('ssh' if scheme in _SSH_SCHEMES else scheme)
    if port == default_port:
        port = None
    if ':' in host:  # IPv6, which urlsplit returns without its brackets
        host = f'[{host}]'
    return _join_remote(host, port, parts.path)


def _join_remote(host: str, port: int | None, path: str) -> str:
    # Hosting services treat `host:org/repo` (relative to the ssh user's home) and
    # `ssh://host/org/repo` (absolute) as the same repository, so leading slashes go too.
    segments = [segment for segment in path.split('/') if segment]
    if segments and segments[-1].endswith('.git'):
        segments[-1] = segments[-1][: -len('.git')]
    segments = [segment for segment in segments if segment]
    host = host.lower()
    authority = f'{host}:{port}' if port is not None else host
    return _azure_devops('/'.join([authority, *segments]))


def _azure_devops(key: str) -> str:
    # Azure DevOps spells one repository `ssh.dev.azure.com:v3/org/project/repo` over ssh and
    # `dev.azure.com/org/project/_git/repo` over https; Flux users meet both.
    ssh_form = re.fullmatch(r'ssh\.dev\.azure\.com/v3/([^/]+)/([^/]+)/([^/]+)', key)
    if ssh_form:
        return 'dev.azure.com/{}/{}/_git/{}'.format(*ssh_form.groups())
    return key


def _normalize_file_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ('', 'localhost'):
        raise ValueError(f'file URL with a remote host: {redact_url(url)!r}')
    return _normalize_local_path(urllib.parse.unquote(parts.path))


def _normalize_local_path(path: str) -> str:
    real = Path(os.path.realpath(os.path.expanduser(path)))
    if real.name == '.git':
        real = real.parent
    posix = real.as_posix()
    return 'file://' + (posix if posix.startswith('/') else f'/{posix}')


# Everything between `scheme://` and the last `@` of the authority. The character class admits
# quotes and `@` on purpose: cutting a raw password short would print the rest of it.
_URL_USERINFO = re.compile(r'(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@')
_SECRET_QUERY = re.compile(
    r'(?P<name>[?&][^=&#\s]*(?:token|password|passwd|secret|key|auth|signature|credential|sig)'
    r'[^=&#\s]*=)[^&#\s\'"]*',
    re.IGNORECASE,
)
# User names that are really credentials: provider token prefixes, and GitHub's old
# `https://<token>:x-oauth-basic@github.com` form.
_TOKEN_LIKE_USER = re.compile(
    r'^(?:gh[pousr]_|github_pat_|glpat-|gldt-|glptt-|ATBB|xox[abp]-)|^[A-Za-z0-9_-]{32,}$',
)
_PLACEHOLDER_PASSWORDS = frozenset(('x-oauth-basic',))
REDACTED = '***'


def redact_url(url: str) -> str:
    """`url` with any password or token replaced by `***`; never raises.

    `https://user:token@host` keeps the user; `https://token@host` (a user name alone over http is
    how tokens are usually passed) becomes `https://***@host`. ssh user names such as `git` are
    kept, including scp-like `git@host:org/repo`. Query parameters named like a secret are
    redacted too.
    """
    return redact_text(url)


def redact_text(text: str) -> str:
    """`text` with the credentials of every URL in it redacted as by redact_url."""
    text = _URL_USERINFO.sub(_redact_userinfo, text)
    return _SECRET_QUERY.sub(lambda match: match['name'] + REDACTED, text)


def _redact_userinfo(match: re.Match[str]) -> str:
    scheme = match['scheme']
    user, has_password, password = match['userinfo'].partition(':')
    if has_password:
        if password in _PLACEHOLDER_PASSWORDS or _TOKEN_LIKE_USER.search(user):
            return f'{scheme}{REDACTED}:{REDACTED}@'
        return f'{scheme}{user}:{REDACTED}@'
    if scheme[:-3].lower() in _SSH_SCHEMES and not _TOKEN_LIKE_USER.search(user):
        return match[0]
    return f'{scheme}{REDACTED}@'
