from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from flux_monitor_hook import exit_codes
from flux_monitor_hook.config import CONFIG_FILE_NAME
from flux_monitor_hook.config import ClusterConfig
from flux_monitor_hook.config import Config
from flux_monitor_hook.config import ConfigError
from flux_monitor_hook.config import ErrorHandlingConfig
from flux_monitor_hook.config import MonitorConfig
from flux_monitor_hook.config import OutputConfig
from flux_monitor_hook.config import SourceRef
from flux_monitor_hook.config import load_config
from flux_monitor_hook.config import setting_names
from flux_monitor_hook.errors import UserError

EXAMPLE = Path(__file__).resolve().parent.parent / '.flux-monitor.yaml.example'
DURATION_HINT = 'use e.g. 300, 300s, 5m or 1h30m'


@pytest.fixture
def repo(tmp_path, monkeypatch):
    # Errors name the file relative to the working directory, as when a hook runs at the root.
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(repo: Path, content: str | bytes, name: str = CONFIG_FILE_NAME) -> Path:
    path = repo / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def load_error(repo: Path, content: str | bytes) -> str:
    write(repo, content)
    with pytest.raises(ConfigError) as excinfo:
        load_config(None, repo)
    message = str(excinfo.value)
    assert '\n' not in message
    assert excinfo.value.exit_code == exit_codes.USAGE
    return message


def uncomment_example() -> str:
    # Settings are commented as `# key: value` (nested ones indented after `# `); prose never
    # starts with a lowercase word and a colon.
    return re.sub(r'^# ( *[a-z_]+:(?: .*)?)$', r'\1', EXAMPLE.read_text(), flags=re.MULTILINE)


def flatten(mapping: dict[str, object], prefix: str = '') -> set[str]:
    keys: set[str] = set()
    for key, value in mapping.items():
        if isinstance(value, dict):
            keys |= flatten(value, f'{prefix}{key}.')
        else:
            keys.add(f'{prefix}{key}')
    return keys


# --- defaults, the example and good files -----------------------------------------------------


def test_defaults():
    config = Config()
    assert config.timeout == 300.0
    assert config.verbosity == 'normal'
    assert config.parallel_monitoring is True
    assert config.monitor == MonitorConfig(kustomizations=True, helmreleases=True, sources=True)
    assert config.output == OutputConfig(format='structured', colors='auto', timestamps=False)
    assert config.error_handling == ErrorHandlingConfig(
        retry_attempts=5, retry_delay=1.0, fail_fast=False,
    )
    assert config.cluster == ClusterConfig(
        context=None, contexts=(), kubeconfig=None, namespaces=(),
    )
    assert config.sources == ()
    assert config.trigger_reconcile is True
    assert config.scope == 'affected'


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().timeout = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().output.format = 'json'  # type: ignore[misc]


def test_example_loads_as_the_defaults(repo):
    write(repo, uncomment_example())
    assert load_config(None, repo) == Config()


def test_example_shows_every_setting():
    document = yaml.safe_load(uncomment_example())
    assert flatten(document) == set(setting_names())


def test_example_commented_out_is_the_defaults(repo):
    write(repo, EXAMPLE.read_text())
    assert load_config(None, repo) == Config()


def test_setting_names_cover_every_dataclass_field():
    names = set()
    for top in dataclasses.fields(Config):
        value = getattr(Config(), top.name)
        if dataclasses.is_dataclass(value):
            names |= {f'{top.name}.{sub.name}' for sub in dataclasses.fields(value)}
        else:
            names.add(top.name)
    assert set(setting_names()) == names


@pytest.mark.parametrize(
    'content', ('', '\n', '# only a comment\n', '---\n', '~\n', 'null\n', '\ufeff'),
)
def test_empty_file_is_the_defaults(repo, content):
    write(repo, content)
    assert load_config(None, repo) == Config()


def test_every_setting(repo):
    write(
        repo,
        """\
timeout: 1h30m
verbosity: verbose
parallel_monitoring: false
monitor:
  kustomizations: false
  helmreleases: false
  sources: false
output:
  format: json
  colors: never
  timestamps: true
error_handling:
  retry_attempts: 0
  retry_delay: 250ms
  fail_fast: true
cluster:
  contexts: [staging, production]
  kubeconfig: /etc/kube/config
  namespaces:
    - flux-system
    - apps
sources:
  - GitRepository/flux-system/flux-system
  - ocirepository/apps/podinfo
trigger_reconcile: false
scope: all
""",
    )
    assert load_config(None, repo) == Config(
        timeout=5400.0,
        verbosity='verbose',
        parallel_monitoring=False,
        monitor=MonitorConfig(kustomizations=False, helmreleases=False, sources=False),
        output=OutputConfig(format='json', colors='never', timestamps=True),
        error_handling=ErrorHandlingConfig(retry_attempts=0, retry_delay=0.25, fail_fast=True),
        cluster=ClusterConfig(
            contexts=('staging', 'production'),
            kubeconfig=Path('/etc/kube/config'),
            namespaces=('flux-system', 'apps'),
        ),
        sources=(
            SourceRef('GitRepository', 'flux-system', 'flux-system'),
            SourceRef('OCIRepository', 'apps', 'podinfo'),  # kind case is forgiven
        ),
        trigger_reconcile=False,
        scope='all',
    )


@pytest.mark.parametrize(
    ('value', 'seconds'),
    (('300', 300.0), ("'300'", 300.0), ('300s', 300.0), ('5m', 300.0), ('1h30m', 5400.0),
     ('1.5', 1.5), ('"250ms"', 0.25)),
)
def test_timeout_forms(repo, value, seconds):
    write(repo, f'timeout: {value}\n')
    assert load_config(None, repo).timeout == seconds


def test_partial_sections_keep_other_defaults(repo):
    write(repo, 'output:\n  format: simple\nmonitor:\n  helmreleases: false\n')
    config = load_config(None, repo)
    assert config.output == OutputConfig(format='simple')
    assert config.monitor == MonitorConfig(helmreleases=False)
    assert config.timeout == 300.0


def test_sections_and_lists_with_everything_commented_out(repo):
    write(repo, 'monitor:\n  # kustomizations: false\noutput:\ncluster:\n  contexts:\nsources:\n')
    assert load_config(None, repo) == Config()


def test_single_context(repo):
    write(repo, 'cluster:\n  context: kind-dev\n  contexts: []\n')
    cluster = load_config(None, repo).cluster
    assert cluster.context == 'kind-dev'
    assert cluster.selected_contexts == ('kind-dev',)


def test_selected_contexts():
    assert ClusterConfig().selected_contexts == (None,)
    assert ClusterConfig(contexts=('a', 'b')).selected_contexts == ('a', 'b')


def test_relative_kubeconfig_is_relative_to_the_file(repo, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp('elsewhere')
    path = write(elsewhere, 'cluster:\n  kubeconfig: secrets/kubeconfig\n', name='settings.yaml')
    assert load_config(path, repo).cluster.kubeconfig == elsewhere / 'secrets/kubeconfig'


def test_home_in_kubeconfig_is_expanded(repo, monkeypatch):
    monkeypatch.setenv('HOME', str(repo / 'home'))
    write(repo, 'cluster:\n  kubeconfig: ~/.kube/config\n')
    assert load_config(None, repo).cluster.kubeconfig == repo / 'home/.kube/config'


def test_yaml_merge_keys(repo):
    write(
        repo,
        'monitor: &quiet\n  helmreleases: false\n'
        'output:\n  <<: {format: json, colors: never}\n  colors: always\n',
    )
    config = load_config(None, repo)
    assert config.monitor.helmreleases is False
    assert config.output == OutputConfig(format='json', colors='always')  # explicit key wins


def test_yaml_1_1_words_are_booleans(repo):
    write(repo, 'trigger_reconcile: no\nparallel_monitoring: off\n')
    config = load_config(None, repo)
    assert config.trigger_reconcile is False
    assert config.parallel_monitoring is False


# --- finding the file -------------------------------------------------------------------------


def test_no_file_anywhere_is_the_defaults(repo):
    assert load_config(None, repo) == Config()
    assert load_config(None, None) == Config()


def test_repo_root_file_is_read(repo):
    write(repo, 'timeout: 1m\n')
    assert load_config(None, repo).timeout == 60.0


def test_explicit_path_wins_over_repo_root(repo):
    write(repo, 'timeout: 1m\n')
    path = write(repo, 'timeout: 2m\n', name='other.yaml')
    assert load_config(path, repo).timeout == 120.0


def test_explicit_path_must_exist(repo):
    write(repo, 'timeout: 1m\n')  # not a fallback for a mistyped explicit path
    with pytest.raises(ConfigError) as excinfo:
        load_config(Path('missing.yaml'), repo)
    assert str(excinfo.value) == 'missing.yaml: config file not found; check the path given'
    assert excinfo.value.exit_code == exit_codes.USAGE


def test_explicit_path_that_is_a_directory(repo):
    (repo / 'conf.d').mkdir()
    with pytest.raises(ConfigError, match=r'^conf\.d: cannot read config file: '):
        load_config(Path('conf.d'), None)


def test_path_outside_the_working_directory_is_named_in_full(repo, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp('elsewhere')
    path = write(elsewhere, 'timout: 5m\n')
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, None)
    assert str(excinfo.value).startswith(f'{path}:1: unknown key')


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, UserError)
    assert ConfigError('x').exit_code == exit_codes.USAGE == 3


# --- errors: each names the file and line (and column for YAML syntax), what is wrong and the fix

SOURCE_EXAMPLE = 'e.g. GitRepository/flux-system/flux-system'
NO_VALUE = 'has no value; set one, or remove the line to use the default'
TOP_LEVEL = 'expected a mapping of settings (e.g. timeout: 5m) at the top level'
BOTH_CONTEXTS = (
    'cluster.context and cluster.contexts cannot both be set; '
    'keep context for one cluster or list them all under contexts'
)
TOP_KEYS = (
    'timeout, verbosity, parallel_monitoring, monitor, output, error_handling, cluster, '
    'sources, trigger_reconcile, scope, notify'
)


@pytest.mark.parametrize(
    ('content', 'message'),
    (
        # Malformed YAML: line:column and PyYAML's problem.
        (
            'timeout: 5m\n  verbosity: normal\n',
            '2:12: invalid YAML: mapping values are not allowed here',
        ),
        (
            'timeout: [5m\n',
            "2:1: invalid YAML: expected ',' or ']', but got '<stream end>' "
            '(while parsing a flow sequence at line 1)',
        ),
        ('\ttimeout: 5m\n', "1:1: invalid YAML: found character '\\t' that cannot start any token; indent "
                            'with spaces, not tabs'),
        (
            "timeout: 'unterminated\n",
            '2:1: invalid YAML: found unexpected end of stream '
            '(while scanning a quoted scalar at line 1)',
        ),
        (
            'timeout: 5m\n---\nverbosity: quiet\n',
            '2:1: invalid YAML: found another document '
            '(expected a single document in the stream at line 1)',
        ),
        ('monitor: *nowhere\n', "1:10: invalid YAML: found undefined alias 'nowhere'"),
        (
            'timeout: !!python/object:os.system 5m\n',
            '1:10: invalid YAML: could not determine a constructor for the tag '
            "'tag:yaml.org,2002:python/object:os.system'",
        ),
        (
            'timeout: 5m\nverbosity: \x07\n',
            '2: invalid YAML: special characters are not allowed (character #x0007)',
        ),
        # The top level is not a mapping.
        ('- timeout: 5m\n', f'1: {TOP_LEVEL}, got a list'),
        ('timeout 5m\n', f"1: {TOP_LEVEL}, got a string ('timeout 5m')"),
        ('42\n', f'1: {TOP_LEVEL}, got an integer (42)'),
        # Unknown keys, at the top level and nested.
        (
            'verbosity: quiet\n\ntimout: 5m\n',
            "3: unknown key 'timout' under (top level); did you mean 'timeout'?",
        ),
        (
            'monitor:\n  kustomization: true\n',
            "2: unknown key 'kustomization' under monitor; did you mean 'kustomizations'?",
        ),
        (
            'output:\n  colour: auto\n',
            "2: unknown key 'colour' under output; did you mean 'colors'?",
        ),
        (
            'error_handling:\n  retries: 3\n',
            "2: unknown key 'retries' under error_handling; "
            'expected one of retry_attempts, retry_delay, fail_fast',
        ),
        (
            'retry_attempts: 3\n',
            "1: unknown key 'retry_attempts' under (top level); it belongs under error_handling",
        ),
        (
            'output:\n  timeout: 5m\n',
            "2: unknown key 'timeout' under output; it belongs at the top level",
        ),
        (
            'output.format: json\n',
            "1: unknown key 'output.format' under (top level); nest it: 'format:' indented under "
            "'output:'",
        ),
        (
            'cluster:\n  zzz: 1\n',
            "2: unknown key 'zzz' under cluster; expected one of context, contexts, kubeconfig, "
            "namespaces",
        ),
        ('on: true\n', f"1: unknown key 'on' under (top level); expected one of {TOP_KEYS}"),
        (
            'monitor:\n  <<: {bogus: 1}\n',
            "2: unknown key 'bogus' under monitor; expected one of kustomizations, helmreleases, "
            "sources",
        ),
        (
            'monitor:\n  <<: 5\n',
            '2:7: invalid YAML: expected a mapping or list of mappings for merging, '
            'but found scalar (while constructing a mapping at line 2)',
        ),
        ('output:\n  <<: {[a]: 1}\n', '2: a setting name under output must be a plain word'),
        (
            'timeout: 5m\nverbosity: quiet\ntimeout: 6m\n',
            "3: duplicate key 'timeout' under (top level) (first at line 1); keep one",
        ),
        ('? [a]\n: 1\n', '1: a setting name under (top level) must be a plain word'),
        # Wrong types: string for bool, list for mapping, bool for int...
        (
            "parallel_monitoring: 'yes'\n",
            "1: parallel_monitoring: expected true or false, got a string ('yes')",
        ),
        (
            'trigger_reconcile: 1\n',
            '1: trigger_reconcile: expected true or false, got an integer (1)',
        ),
        (
            'monitor:\n  sources: "false"\n',
            "2: monitor.sources: expected true or false, got a string ('false')",
        ),
        ('output:\n  timestamps: null\n', f'2: output.timestamps: {NO_VALUE}'),
        (
            'monitor: [kustomizations]\n',
            '1: monitor: expected a mapping (e.g. kustomizations: ...), got a list',
        ),
        (
            'monitor: true\n',
            '1: monitor: expected a mapping (e.g. kustomizations: ...), got a boolean (true)',
        ),
        (
            'cluster: prod\n',
            "1: cluster: expected a mapping (e.g. context: ...), got a string ('prod')",
        ),
        (
            'error_handling:\n  retry_attempts: true\n',
            '2: error_handling.retry_attempts: expected a whole number of 0 or more, got a '
            'boolean (true)',
        ),
        (
            'error_handling:\n  retry_attempts: 2.5\n',
            '2: error_handling.retry_attempts: expected a whole number of 0 or more, got a number '
            '(2.5)',
        ),
        (
            "error_handling:\n  retry_attempts: '3'\n",
            "2: error_handling.retry_attempts: expected a whole number of 0 or more, got a string "
            "('3')",
        ),
        (
            'error_handling:\n  retry_attempts: -1\n',
            '2: error_handling.retry_attempts: -1 is negative; use 0 or more',
        ),
        # Durations.
        ('timeout: 5 minutes\n', f"1: timeout: '5 minutes' is not a duration; {DURATION_HINT}"),
        ('timeout: -5m\n', f"1: timeout: '-5m' is negative; {DURATION_HINT}"),
        ('timeout: -5\n', f'1: timeout: -5 is negative; {DURATION_HINT}'),
        ('timeout: 0\n', f'1: timeout: 0 must be more than 0; {DURATION_HINT}'),
        (
            'timeout: true\n',
            f'1: timeout: expected a duration, got a boolean (true); {DURATION_HINT}',
        ),
        ('timeout: [5m]\n', f'1: timeout: expected a duration, got a list; {DURATION_HINT}'),
        ('timeout:\n', f'1: timeout: {NO_VALUE}'),
        (
            'error_handling:\n  retry_delay: soon\n',
            f"2: error_handling.retry_delay: 'soon' is not a duration; {DURATION_HINT}",
        ),
        (
            'error_handling:\n  retry_delay: -1s\n',
            f"2: error_handling.retry_delay: '-1s' is negative; {DURATION_HINT}",
        ),
        # Choices.
        ('verbosity: loud\n', "1: verbosity: 'loud' is not one of quiet, normal, verbose"),
        (
            'verbosity: Verbose\n',
            "1: verbosity: 'Verbose' is not one of quiet, normal, verbose; did you mean 'verbose'?",
        ),
        (
            'output:\n  format: xml\n',
            "2: output.format: 'xml' is not one of structured, simple, json",
        ),
        (
            'output:\n  format: jsn\n',
            "2: output.format: 'jsn' is not one of structured, simple, json; did you mean 'json'?",
        ),
        (
            'output:\n  colors: no\n',
            '2: output.colors: expected one of auto, always, never, got a boolean (false)',
        ),
        ('scope: some\n', "1: scope: 'some' is not one of affected, all"),
        # The cluster.
        ('cluster:\n  context: a\n  contexts: [b]\n', f'3: {BOTH_CONTEXTS}'),
        ('cluster:\n  contexts:\n    - b\n  context: a\n', f'4: {BOTH_CONTEXTS}'),
        (
            'cluster:\n  contexts: prod\n',
            "2: cluster.contexts: expected a list, got a string ('prod'); write it as a list: "
            "[prod]",
        ),
        (
            'cluster:\n  contexts: [a, a]\n',
            "2: cluster.contexts[1]: 'a' is listed twice; remove one",
        ),
        (
            'cluster:\n  context: 1234\n',
            '2: cluster.context: expected a string, got an integer (1234); put it in quotes',
        ),
        ("cluster:\n  context: ''\n", '2: cluster.context: is empty; give a name or remove it'),
        ('cluster:\n  kubeconfig: [a]\n', '2: cluster.kubeconfig: expected a string, got a list'),
        (
            'cluster:\n  namespaces:\n    - flux-system\n    - Flux_System\n',
            "4: cluster.namespaces[1]: 'Flux_System' is not a namespace name; "
            'use lowercase letters, digits and -',
        ),
        (
            'cluster:\n  namespaces: {a: b}\n',
            '2: cluster.namespaces: expected a list, got a mapping',
        ),
        # Sources.
        (
            'sources: [GitRepository/flux-system]\n',
            f"1: sources[0]: 'GitRepository/flux-system' is not Kind/namespace/name; "
            f"{SOURCE_EXAMPLE}",
        ),
        (
            'sources:\n  - GitRepository/flux-system/ok\n  - GitRepo/flux-system/x\n',
            "3: sources[1]: 'GitRepo' in 'GitRepo/flux-system/x' is not a Flux source kind; "
            "did you mean 'GitRepository'?",
        ),
        (
            'sources:\n  - Foo/flux-system/x\n',
            "2: sources[0]: 'Foo' in 'Foo/flux-system/x' is not a Flux source kind; use one of "
            'GitRepository, OCIRepository, Bucket, HelmRepository, HelmChart, ExternalArtifact',
        ),
        (
            'sources: GitRepository/a/b\n',
            "1: sources: expected a list, got a string ('GitRepository/a/b'); "
            'write it as a list: [GitRepository/a/b]',
        ),
        (
            'sources:\n  - {kind: GitRepository}\n',
            f'2: sources[0]: expected a string Kind/namespace/name, got a mapping; '
            f'{SOURCE_EXAMPLE}',
        ),
        (
            'sources: [GitRepository/Bad_NS/x]\n',
            f"1: sources[0]: 'Bad_NS' in 'GitRepository/Bad_NS/x' is not a namespace name; "
            f"{SOURCE_EXAMPLE}",
        ),
        (
            'sources: [GitRepository/ns/Bad_Name]\n',
            f"1: sources[0]: 'Bad_Name' in 'GitRepository/ns/Bad_Name' is not an object name; "
            f'{SOURCE_EXAMPLE}',
        ),
        (
            'sources: [GitRepository/a/b, gitrepository/a/b]\n',
            "1: sources[1]: 'GitRepository/a/b' is listed twice; remove one",
        ),
    ),
)
def test_errors(repo, content, message):
    assert load_error(repo, content) == f'{CONFIG_FILE_NAME}:{message}'


def test_error_for_bytes_that_are_not_utf8(repo):
    assert load_error(repo, b'timeout: 5m\n\xff\n') == (
        f'{CONFIG_FILE_NAME}: not UTF-8 text (byte 12); save it as UTF-8'
    )


# --- command-line overrides -------------------------------------------------------------------


def test_overrides_replace_file_values(repo):
    write(repo, 'timeout: 1m\noutput:\n  format: simple\n  colors: never\n')
    config = load_config(None, repo).with_overrides(timeout='10s', **{'output.format': 'json'})
    assert config.timeout == 10.0
    assert config.output == OutputConfig(format='json', colors='never')


def test_overrides_return_a_copy():
    config = Config()
    assert config.with_overrides(timeout=60) is not config
    assert config.timeout == 300.0


def test_unset_flags_are_skipped():
    config = Config(timeout=60.0, cluster=ClusterConfig(namespaces=('apps',)))
    unset: dict[str, object] = {'timeout': None, 'verbosity': None, 'cluster.namespaces': []}
    assert config.with_overrides(**unset) == config


@pytest.mark.parametrize(
    ('overrides', 'expected'),
    (
        ({'timeout': 90}, Config(timeout=90.0)),
        ({'timeout': '1h30m'}, Config(timeout=5400.0)),
        ({'verbosity': 'quiet'}, Config(verbosity='quiet')),
        ({'trigger_reconcile': False}, Config(trigger_reconcile=False)),
        ({'scope': 'all'}, Config(scope='all')),
        ({'monitor.helmreleases': False}, Config(monitor=MonitorConfig(helmreleases=False))),
        (
            {'error_handling.retry_attempts': 0},
            Config(error_handling=ErrorHandlingConfig(retry_attempts=0)),
        ),
        (
            {'error_handling.retry_delay': '2s'},
            Config(error_handling=ErrorHandlingConfig(retry_delay=2.0)),
        ),
        ({'cluster.kubeconfig': '/k'}, Config(cluster=ClusterConfig(kubeconfig=Path('/k')))),
        ({'cluster.namespaces': ['a', 'b']}, Config(cluster=ClusterConfig(namespaces=('a', 'b')))),
        (
            {'sources': ['GitRepository/flux-system/flux-system']},
            Config(sources=(SourceRef('GitRepository', 'flux-system', 'flux-system'),)),
        ),
    ),
)
def test_overrides(overrides, expected):
    assert Config().with_overrides(**overrides) == expected


def test_context_flag_replaces_contexts_from_the_file():
    config = Config(cluster=ClusterConfig(contexts=('a', 'b')))
    assert config.with_overrides(**{'cluster.context': 'c'}).cluster == ClusterConfig(context='c')


def test_contexts_flag_replaces_context_from_the_file():
    config = Config(cluster=ClusterConfig(context='a'))
    overridden = config.with_overrides(**{'cluster.contexts': ('b', 'c')})
    assert overridden.cluster == ClusterConfig(contexts=('b', 'c'))


def test_context_and_contexts_flags_together():
    with pytest.raises(ConfigError, match=r'^cluster\.context and cluster\.contexts cannot both'):
        Config().with_overrides(**{'cluster.context': 'a', 'cluster.contexts': ['b']})


@pytest.mark.parametrize(
    ('overrides', 'message'),
    (
        ({'timeout': '5 minutes'}, f"timeout: '5 minutes' is not a duration; {DURATION_HINT}"),
        ({'timeout': 0}, f'timeout: 0 must be more than 0; {DURATION_HINT}'),
        ({'output.format': 'xml'}, "output.format: 'xml' is not one of structured, simple, json"),
        (
            {'error_handling.retry_attempts': -1},
            'error_handling.retry_attempts: -1 is negative; use 0 or more',
        ),
        (
            {'error_handling.retry_attempts': True},
            'error_handling.retry_attempts: expected a whole number',
        ),
        (
            {'trigger_reconcile': 'yes'},
            "trigger_reconcile: expected true or false, got a string ('yes')",
        ),
        (
            {'cluster.namespaces': 'apps'},
            "cluster.namespaces: expected a list, got a string ('apps')",
        ),
        (
            {'cluster.contexts': ['a', 'a']},
            "cluster.contexts: item 2: 'a' is listed twice; remove one",
        ),
        (
            {'sources': ['GitRepository/x']},
            "sources: item 1: 'GitRepository/x' is not Kind/namespace/name",
        ),
    ),
)
def test_bad_overrides(overrides, message):
    with pytest.raises(ConfigError) as excinfo:
        Config().with_overrides(**overrides)
    assert str(excinfo.value).startswith(message)


def test_unknown_override_is_a_programming_error():
    with pytest.raises(TypeError, match="unknown setting 'timout'"):
        Config().with_overrides(timout=1)
    with pytest.raises(TypeError, match="unknown setting 'output'"):
        Config().with_overrides(output=OutputConfig())
