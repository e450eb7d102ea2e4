"""`.flux-monitor.yaml`: settings for `flux-monitor wait`, overridden by command-line flags.

The file is read from YAML nodes rather than plain Python values so that every error can name
the line of the offending key; errors are one line: `<file>:<line>: <what>; <how to fix>`.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Literal
from typing import get_args

import yaml

from flux_monitor_hook import durations
from flux_monitor_hook.errors import UserError

CONFIG_FILE_NAME = '.flux-monitor.yaml'

Verbosity = Literal['quiet', 'normal', 'verbose']
OutputFormat = Literal['structured', 'simple', 'json']
Colors = Literal['auto', 'always', 'never']
Scope = Literal['affected', 'all']
VERBOSITIES: tuple[str, ...] = get_args(Verbosity)
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
COLOR_MODES: tuple[str, ...] = get_args(Colors)
SCOPES: tuple[str, ...] = get_args(Scope)
SOURCE_KINDS = (
    'GitRepository', 'OCIRepository', 'Bucket', 'HelmRepository', 'HelmChart', 'ExternalArtifact',
)


class ConfigError(UserError):
    """A bad configuration file or setting; exits with the usage code."""


@dataclass(frozen=True)
class SourceRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f'{self.kind}/{self.namespace}/{self.name}'


@dataclass(frozen=True)
class MonitorConfig:
    kustomizations: bool = True
    helmreleases: bool = True
    sources: bool = True


@dataclass(frozen=True)
class OutputConfig:
    format: OutputFormat = 'structured'
    colors: Colors = 'auto'
    timestamps: bool = False


@dataclass(frozen=True)
class ErrorHandlingConfig:
    retry_attempts: int = 5
    retry_delay: float = 1.0  # seconds
    fail_fast: bool = False


@dataclass(frozen=True)
class ClusterConfig:
    context: str | None = None
    contexts: tuple[str, ...] = ()
    kubeconfig: Path | None = None
    namespaces: tuple[str, ...] = ()

    @property
    def selected_contexts(self) -> tuple[str | None, ...]:
        """The kubeconfig contexts to watch; `(None,)` means the current context."""
        if self.contexts:
            return self.contexts
        return (self.context,)


@dataclass(frozen=True)
class NotifyConfig:
    desktop: bool = False
    webhook: str | None = None  # a URL that gets a JSON POST (Slack-compatible `text`) when a follower ends


@dataclass(frozen=True)
class Config:
    timeout: float = 300.0  # seconds
    verbosity: Verbosity = 'normal'
    parallel_monitoring: bool = True
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    error_handling: ErrorHandlingConfig = field(default_factory=ErrorHandlingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    sources: tuple[SourceRef, ...] = ()
    trigger_reconcile: bool = True
    scope: Scope = 'affected'
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    def with_overrides(self, **overrides: object) -> Config:
        """A copy with settings replaced, e.g. from command-line flags.

        Keys are dotted setting names as in the file (`timeout`, `output.format`; pass nested
        ones as `**{'output.format': 'json'}`). None values and empty lists are skipped, so
        unset flags can be passed as they are. Values are checked as in the file (durations may
        be strings), and setting one of `cluster.context` / `cluster.contexts` clears the other.
        """
        values: dict[str, object] = {}
        for key, value in overrides.items():
            if value is None or (isinstance(value, (list, tuple)) and not value):
                continue
            try:
                if key in _LISTS:
                    values[key] = _convert_list(_LISTS[key], value)
                elif key in _SCALARS:
                    values[key] = _SCALARS[key](value)
                else:
                    raise TypeError(f'with_overrides() got an unknown setting {key!r}')
            except _Invalid as error:
                raise ConfigError(f'{key}: {error}') from None
        context, contexts = values.get('cluster.context'), values.get('cluster.contexts')
        if context is not None and contexts:
            raise ConfigError(f'{_BOTH_CONTEXTS}; give one context or a list of contexts')
        if context is not None:
            values['cluster.contexts'] = ()
        elif contexts:
            values['cluster.context'] = None
        return _build(self, values)


def load_config(path: Path | None = None, repo_root: Path | None = None) -> Config:
    """Read the configuration: `path` if given (it must exist), else
    `<repo_root>/.flux-monitor.yaml` if there is one, else the defaults.

    Raises ConfigError for any problem in the file.
    """
    if path is None:
        if repo_root is None:
            return Config()
        path = repo_root / CONFIG_FILE_NAME
        required = False
    else:
        required = True
    label = _display_path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        if not required:
            return Config()
        raise ConfigError(f'{label}: config file not found; check the path given') from None
    except OSError as error:
        raise ConfigError(f'{label}: cannot read config file: {error.strerror}') from None
    try:
        text = content.decode('utf-8-sig')
    except UnicodeDecodeError as error:
        message = f'{label}: not UTF-8 text (byte {error.start}); save it as UTF-8'
        raise ConfigError(message) from None
    return parse_config(text, label, base_dir=path.parent)


def parse_config(text: str, label: str, base_dir: Path) -> Config:
    """Parse configuration text; `label` names it in errors, relative paths are under `base_dir`."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            values = _Reader(loader, label).read(loader.get_single_node())
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        raise ConfigError(_yaml_error_message(label, text, error)) from None
    kubeconfig = values.get('cluster.kubeconfig')
    if isinstance(kubeconfig, Path) and not kubeconfig.is_absolute():
        # A path in a file committed to the repository means the same wherever git runs.
        values['cluster.kubeconfig'] = base_dir / kubeconfig
    return _build(Config(), values)


def setting_names() -> tuple[str, ...]:
    """Every setting as a dotted name, in file order."""
    names: list[str] = []
    for top in dataclasses.fields(Config):
        default = getattr(Config(), top.name)
        if dataclasses.is_dataclass(default):
            names.extend(f'{top.name}.{sub.name}' for sub in dataclasses.fields(default))
        else:
            names.append(top.name)
    return tuple(names)


def _build(base: Config, values: Mapping[str, object]) -> Config:
    top: dict[str, Any] = {}  # checked by the converters, which mypy cannot follow
    sections: dict[str, dict[str, object]] = {}
    for key, value in values.items():
        section, dot, name = key.partition('.')
        if dot:
            sections.setdefault(section, {})[name] = value
        else:
            top[key] = value
    for section, changes in sections.items():
        top[section] = dataclasses.replace(getattr(base, section), **changes)
    return dataclasses.replace(base, **top)


def _display_path(path: Path) -> str:
    # Relative to the working directory when under it, as hooks run at the repository root.
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return str(path)
    return str(path) if relative.startswith(os.pardir) else relative


def _yaml_error_message(label: str, text: str, error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f'{label}:{mark.line + 1}:{mark.column + 1}' if mark else label
        # PyYAML words some problems to follow their context: "but found another document".
        problem = (error.problem or error.context or 'unreadable').removeprefix('but ')
        message = f'{where}: invalid YAML: {problem}'
        if error.context and error.problem and error.context_mark:
            message += f' ({error.context} at line {error.context_mark.line + 1})'
        if "'\\t'" in message:
            message += '; indent with spaces, not tabs'
    elif isinstance(error, yaml.reader.ReaderError):
        line = text.count('\n', 0, error.position) + 1
        character = error.character  # a code point, as the text is a str
        message = f'{label}:{line}: invalid YAML: {error.reason} (character #x{character:04x})'
    else:
        message = f'{label}: invalid YAML: {error}'
    return ' '.join(message.split())


# --- checking values --------------------------------------------------------------------------


class _Invalid(ValueError):
    """What is wrong with one value, and how to fix it; the caller adds where."""


def _describe(value: object) -> str:
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return f'a boolean ({str(value).lower()})'
    if isinstance(value, int):
        return f'an integer ({value})'
    if isinstance(value, float):
        return f'a number ({value})'
    if isinstance(value, str):
        return f'a string ({value!r})'
    if isinstance(value, (list, tuple)):
        return 'a list'
    if isinstance(value, dict):
        return 'a mapping'
    return f'a {type(value).__name__} ({value})'


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _Invalid(f'expected true or false, got {_describe(value)}')


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f'expected a whole number of 0 or more, got {_describe(value)}')
    if value < 0:
        raise _Invalid(f'{value} is negative; use 0 or more')
    return value


def _duration(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Invalid(f'expected a duration, got {_describe(value)}; {durations.HINT}')
    try:
        return durations.parse_duration(value)
    except ValueError as error:
        raise _Invalid(str(error)) from None


def _timeout(value: object) -> float:
    seconds = _duration(value)
    if seconds == 0:
        raise _Invalid(f'{value!r} must be more than 0; {durations.HINT}')
    return seconds


def _choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        if not isinstance(value, str):
            raise _Invalid(f'expected one of {", ".join(choices)}, got {_describe(value)}')
        message = f'{value!r} is not one of {", ".join(choices)}'
        close = difflib.get_close_matches(value.lower(), choices, n=1)
        raise _Invalid(f'{message}; did you mean {close[0]!r}?' if close else message)

    return convert


def _string(value: object) -> str:
    if isinstance(value, str):
        if not value.strip():
            raise _Invalid('is empty; give a name or remove it')
        return value
    if isinstance(value, (bool, int, float)):
        # YAML turned a bare word into a number or boolean (`1234`, `no`); quotes keep it text.
        raise _Invalid(f'expected a string, got {_describe(value)}; put it in quotes')
    raise _Invalid(f'expected a string, got {_describe(value)}')


def _webhook(value: object) -> str | None:
    url = _optional_string(value)
    if url is not None and not url.startswith(('https://', 'http://')):
        raise _Invalid(f'{url!r} is not an http(s) URL; use e.g. https://hooks.slack.com/services/...')
    return url


def _optional_string(value: object) -> str | None:
    return None if value is None else _string(value)


def _optional_path(value: object) -> Path | None:
    return None if value is None else Path(_string(value)).expanduser()


_NAMESPACE = re.compile(r'[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?')
_LABEL = r'[a-z0-9]([-a-z0-9]*[a-z0-9])?'
_OBJECT_NAME = re.compile(rf'(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*')


def _namespace(value: object) -> str:
    text = _string(value)
    if not _NAMESPACE.fullmatch(text):
        raise _Invalid(f'{text!r} is not a namespace name; use lowercase letters, digits and -')
    return text


def _source_ref(value: object) -> SourceRef:
    example = 'e.g. GitRepository/flux-system/flux-system'
    if not isinstance(value, str):
        raise _Invalid(f'expected a string Kind/namespace/name, got {_describe(value)}; {example}')
    text = value
    parts = text.split('/')
    if len(parts) != 3:
        raise _Invalid(f'{text!r} is not Kind/namespace/name; {example}')
    kind_text, namespace, name = parts
    kinds = {kind.lower(): kind for kind in SOURCE_KINDS}
    kind = kinds.get(kind_text.lower())
    if kind is None:
        close = difflib.get_close_matches(kind_text.lower(), kinds, n=1)
        hint = f'use one of {", ".join(SOURCE_KINDS)}'
        if close:
            hint = f'did you mean {kinds[close[0]]!r}?'
        raise _Invalid(f'{kind_text!r} in {text!r} is not a Flux source kind; {hint}')
    if not _NAMESPACE.fullmatch(namespace):
        raise _Invalid(f'{namespace!r} in {text!r} is not a namespace name; {example}')
    if not _OBJECT_NAME.fullmatch(name):
        raise _Invalid(f'{name!r} in {text!r} is not an object name; {example}')
    return SourceRef(kind, namespace, name)


def _convert_list(convert: Callable[[object], object], value: object) -> tuple[object, ...]:
    if not isinstance(value, (list, tuple)):
        raise _Invalid(_not_a_list(value))
    items: list[object] = []
    for index, item in enumerate(value):
        try:
            items.append(_unique(convert(item), items))
        except _Invalid as error:
            raise _Invalid(f'item {index + 1}: {error}') from None
    return tuple(items)


def _not_a_list(value: object) -> str:
    if isinstance(value, str):
        return f'expected a list, got {_describe(value)}; write it as a list: [{value}]'
    return f'expected a list, got {_describe(value)}'


def _unique(item: object, seen: list[object]) -> object:
    if item in seen:
        raise _Invalid(f'{str(item)!r} is listed twice; remove one')
    return item


# Dotted setting name -> how to check and convert its value.
_SCALARS: dict[str, Callable[[object], object]] = {
    'timeout': _timeout,
    'verbosity': _choice(VERBOSITIES),
    'parallel_monitoring': _bool,
    'monitor.kustomizations': _bool,
    'monitor.helmreleases': _bool,
    'monitor.sources': _bool,
    'output.format': _choice(OUTPUT_FORMATS),
    'output.colors': _choice(COLOR_MODES),
    'output.timestamps': _bool,
    'error_handling.retry_attempts': _count,
    'error_handling.retry_delay': _duration,
    'error_handling.fail_fast': _bool,
    'cluster.context': _optional_string,
    'cluster.kubeconfig': _optional_path,
    'trigger_reconcile': _bool,
    'scope': _choice(SCOPES),
    'notify.desktop': _bool,
    'notify.webhook': _webhook,
}
# Lists: how to check each item. An empty (null) value is the empty list.
_LISTS: dict[str, Callable[[object], object]] = {
    'cluster.contexts': _string,
    'cluster.namespaces': _namespace,
    'sources': _source_ref,
}
_SECTIONS = ('monitor', 'output', 'error_handling', 'cluster', 'notify')
_BOTH_CONTEXTS = 'cluster.context and cluster.contexts cannot both be set'


def _keys_under(section: str) -> tuple[str, ...]:
    names = setting_names()
    if not section:
        return tuple(dict.fromkeys(name.partition('.')[0] for name in names))
    return tuple(name.partition('.')[2] for name in names if name.startswith(f'{section}.'))


def _unknown_key_hint(key: str, section: str) -> str:
    known = _keys_under(section)
    elsewhere = [name for name in (*_SCALARS, *_LISTS) if name.rpartition('.')[2] == key]
    if '.' in key and (key in _SCALARS or key in _LISTS):
        parent, _, child = key.partition('.')
        return f"nest it: '{child}:' indented under '{parent}:'"
    if elsewhere:
        parent = elsewhere[0].rpartition('.')[0]
        return f'it belongs under {parent}' if parent else 'it belongs at the top level'
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f'did you mean {close[0]!r}?'
    return f'expected one of {", ".join(known)}'


# --- reading YAML nodes -----------------------------------------------------------------------


_Pair = tuple[yaml.Node, yaml.Node]  # a key node and its value node


@dataclass(frozen=True)
class _Reader:
    loader: yaml.SafeLoader
    label: str

    def read(self, root: yaml.Node | None) -> dict[str, object]:
        if root is None or self._is_null(root):
            return {}
        if not isinstance(root, yaml.MappingNode):
            raise self._error(
                root,
                f'expected a mapping of settings (e.g. timeout: 5m) at the top level, '
                f'got {self._describe_node(root)}',
            )
        values: dict[str, object] = {}
        lines: dict[str, int] = {}
        for key, (key_node, value_node) in self._mapping(root, '').items():
            lines[key] = key_node.start_mark.line
            if key in _SECTIONS:
                values.update(self._section(key, value_node, lines))
            else:
                values[key] = self._value(key, value_node)
        if values.get('cluster.context') is not None and values.get('cluster.contexts'):
            later = max(lines['cluster.context'], lines['cluster.contexts'])
            raise ConfigError(
                f'{self.label}:{later + 1}: {_BOTH_CONTEXTS}; '
                'keep context for one cluster or list them all under contexts',
            )
        return values

    def _section(self, section: str, node: yaml.Node, lines: dict[str, int]) -> dict[str, object]:
        if self._is_null(node):  # a heading whose settings are all commented out
            return {}
        if not isinstance(node, yaml.MappingNode):
            example = f'{_keys_under(section)[0]}: ...'
            raise self._error(
                node,
                f'{section}: expected a mapping (e.g. {example}), got {self._describe_node(node)}',
            )
        values: dict[str, object] = {}
        for key, (key_node, value_node) in self._mapping(node, section).items():
            name = f'{section}.{key}'
            lines[name] = key_node.start_mark.line
            values[name] = self._value(name, value_node)
        return values

    def _mapping(self, node: yaml.MappingNode, section: str) -> dict[str, _Pair]:
        known = _keys_under(section)
        where = section or '(top level)'
        pairs: dict[str, _Pair] = {}
        for key_node, value_node in node.value:
            if key_node.tag == 'tag:yaml.org,2002:merge':
                continue
            key = self._key(key_node, where)
            if key in pairs:
                first = pairs[key][0].start_mark.line + 1
                message = f'duplicate key {key!r} under {where} (first at line {first}); keep one'
                raise self._error(key_node, message)
            if key not in known:
                hint = _unknown_key_hint(key, section)
                raise self._error(key_node, f'unknown key {key!r} under {where}; {hint}')
            pairs[key] = (key_node, value_node)
        # `<<: *anchor` merges: explicit keys, checked above, win over merged ones.
        self.loader.flatten_mapping(node)
        merged: dict[str, _Pair] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, where)
            if key not in known:
                hint = _unknown_key_hint(key, section)
                raise self._error(key_node, f'unknown key {key!r} under {where}; {hint}')
            merged[key] = (key_node, value_node)
        return {**merged, **pairs}

    def _key(self, node: yaml.Node, where: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self._error(node, f'a setting name under {where} must be a plain word')
        # The key as written: YAML would read `on:` as true and `1:` as a number.
        return str(node.value)

    def _value(self, name: str, node: yaml.Node) -> object:
        if name in _LISTS:
            return self._list(name, node)
        value = self._construct(node)
        if value is None and name not in ('cluster.context', 'cluster.kubeconfig', 'notify.webhook'):
            raise self._error(
                node, f'{name}: has no value; set one, or remove the line to use the default',
            )
        try:
            return _SCALARS[name](value)
        except _Invalid as error:
            raise self._error(node, f'{name}: {error}') from None

    def _list(self, name: str, node: yaml.Node) -> tuple[object, ...]:
        if self._is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise self._error(node, f'{name}: {_not_a_list(self._construct(node))}')
        items: list[object] = []
        for index, item_node in enumerate(node.value):
            try:
                items.append(_unique(_LISTS[name](self._construct(item_node)), items))
            except _Invalid as error:
                raise self._error(item_node, f'{name}[{index}]: {error}') from None
        return tuple(items)

    def _construct(self, node: yaml.Node) -> object:
        # Collections stand in as empty ones: the checks only need to tell their type.
        if isinstance(node, yaml.SequenceNode):
            return []
        if isinstance(node, yaml.MappingNode):
            return {}
        return self.loader.construct_object(node, deep=True)

    def _is_null(self, node: yaml.Node) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == 'tag:yaml.org,2002:null'

    def _describe_node(self, node: yaml.Node) -> str:
        return _describe(self._construct(node))

    def _error(self, node: yaml.Node, message: str) -> ConfigError:
        return ConfigError(f'{self.label}:{node.start_mark.line + 1}: {message}')
