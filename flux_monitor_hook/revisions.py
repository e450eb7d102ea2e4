"""Flux artifact revisions: `main@sha1:<sha>`, `sha256:<hex>`, legacy `main/<sha>`, chart versions.

Formats and parsing rules follow fluxcd/pkg `git/git.go` (Commit.String, Hash.Algorithm) and
`git/utils.go` (ExtractHashFromRevision), and source-controller's HelmChart versioning.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_HEX = re.compile(r'[0-9a-fA-F]+')
_ALGORITHM = re.compile(r'[a-z0-9<>_+.-]+')
_COMMIT_PREFIX = re.compile(r'[0-9a-f]{12}')
_GIT_SHA = re.compile(r'[0-9a-fA-F]{40}|[0-9a-fA-F]{64}')
# pkg git.Hash.Algorithm() names only 40 hex digits; anything else it calls "<unknown>".
_GIT_ALGORITHMS = frozenset(('sha1', '<unknown>'))
_SHORT_GIT = 7  # as `git log --oneline`
_SHORT_DIGEST = 12  # as docker and Flux's chart versions shorten content digests


@dataclass(frozen=True)
class Revision:
    """One artifact revision split into its parts.

    `ref` is the branch, tag, full ref or OCI tag before `@` (or before the last `/` in the legacy
    format), `algorithm` is `sha1`, `sha256`... when the revision names one, and `digest` is what
    ExtractHashFromRevision returns: the commit SHA or content digest, or the whole revision for
    chart versions and other opaque revisions.
    """

    ref: str | None
    algorithm: str | None
    digest: str


def extract_hash(revision: str) -> str:
    """The hash in `revision`, as pkg ExtractHashFromRevision: after the last `:`, else the last
    `/`-separated segment, else the whole string."""
    if ':' in revision:
        return revision.rpartition(':')[2]
    return revision.rpartition('/')[2]


def parse_revision(revision: str) -> Revision:
    """Split a Flux revision into ref, algorithm and digest; `digest == extract_hash(revision)`.

    Raises ValueError for an empty revision or one whose hash part is empty.
    """
    digest = extract_hash(revision)
    if not revision or not digest:
        raise ValueError(f'not a Flux revision: {revision!r}')
    if ':' in revision:
        head = revision.rpartition(':')[0]
        ref, at, algorithm = head.rpartition('@')
        if _ALGORITHM.fullmatch(algorithm):
            return Revision(ref if at and ref else None, algorithm, digest)
        # A `:` that is not `<algorithm>:` (unusual tag characters); keep the hash rule anyway.
        return Revision(head or None, None, digest)
    if '/' in revision:
        return Revision(revision.rpartition('/')[0] or None, None, digest)
    return Revision(None, None, digest)


def same_commit(revision: str, sha: str) -> bool:
    """Whether a Flux git revision names the full commit `sha`, in any revision format."""
    try:
        digest = parse_revision(revision.strip()).digest
    except ValueError:
        return False
    return bool(sha) and digest.lower() == sha.strip().lower()


def format_git_revision(ref_name: str | None, sha: str) -> str:
    """The revision source-controller reports for `sha` fetched through `ref_name`.

    `ref_name` is what Flux puts before the `@`: the branch (`main`), tag (`v1.0.0`) or, for
    `spec.ref.name`, the full ref (`refs/heads/main`); None or empty for a commit-only ref.
    """
    if not _GIT_SHA.fullmatch(sha):
        raise ValueError(f'not a full git commit SHA: {sha!r}')
    digest = f'{"sha1" if len(sha) == 40 else "<unknown>"}:{sha.lower()}'
    return f'{ref_name}@{digest}' if ref_name else digest


def short_revision(revision: str) -> str:
    """`revision` with its hash shortened for display, keeping the format.

    `main@sha1:1a2b3c4…` → `main@sha1:1a2b3c4`, legacy `main/<sha>` → `main/1a2b3c4`; content
    digests (`sha256:` and friends) keep 12 hex digits. Anything else, e.g. a chart version, is
    returned unchanged.
    """
    try:
        parsed = parse_revision(revision)
    except ValueError:
        return revision
    digest = parsed.digest
    if not _HEX.fullmatch(digest):
        return revision
    if parsed.algorithm in _GIT_ALGORITHMS or (parsed.algorithm is None and len(digest) == 40):
        length = _SHORT_GIT
    elif parsed.algorithm is not None or len(digest) == 64:
        length = _SHORT_DIGEST
    else:
        return revision
    return revision[: len(revision) - len(digest)] + digest[:length]


def chart_revision_commit_prefix(chart_version: str) -> str | None:
    """The 12-hex commit prefix in a chart version built with `reconcileStrategy: Revision`.

    source-controller sets the version's build metadata to the first 12 hex digits of the source
    revision, followed by `.<generation>` when valuesFiles are set: `6.0.3+4e5cbb7b97d0` and
    `6.0.3+4e5cbb7b97d0.1` give `4e5cbb7b97d0`; `6.0.3+1` and `6.0.3` give None. For a Bucket
    source the prefix is of the bucket's content digest, not of a commit, so callers must check
    the chart's source kind.
    """
    _, plus, metadata = chart_version.strip().partition('+')
    if not plus:
        return None
    first = metadata.split('.', 1)[0].lower()
    return first if _COMMIT_PREFIX.fullmatch(first) else None
