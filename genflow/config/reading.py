"""Reading params YAML: a file, a ``--set`` value, a best_params file.

Every problem is a ConfigError naming the source: not a regular file, too large, not UTF-8,
not YAML, a key repeated in a mapping (YAML would silently keep the last one), or an alias
bomb. The checks run on the composed YAML nodes, before any value is built, so an alias bomb is
measured, never expanded. Overrides change exactly the key they name, even through aliases.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import yaml

from genflow.errors import ConfigError, excerpt

# libyaml's parser where PyYAML was built with it: about 5x faster on a large file, so that even a
# file of a hundred thousand values is refused within the 2 s promised (values are built in Python)
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):
    """YAML 1.2 floats: PyYAML reads '1e-4' as a string, DVC (ruamel) as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$|^[-+]?\d+[eE][-+]?\d+$"
               r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def _int_or_float(loader: yaml.SafeLoader, node: yaml.Node) -> int | float:
    text = loader.construct_scalar(node)
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    special = {".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}
    return float(special.get(text.lower(), text))


_Loader.add_constructor("tag:yaml.org,2002:float", _int_or_float)

MAX_VALUES = 1_000_000  # a params file is a few hundred values; more is a YAML alias bomb
MAX_FILE_BYTES = 2**20  # a params file is a few kB; parsing 1 MiB takes about 0.5 s


def read_yaml(path: str | Path) -> Any:
    """A params (or best_params) file, parsed: every problem a ConfigError naming the file."""
    path = Path(path)
    return parse_yaml(_read_text(path), str(path))


def _read_text(path: Path) -> str:
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; give a params file (YAML)")
    if not path.is_file():  # a pipe or a device: reading it could wait for ever
        raise ConfigError(f"{path}: not a regular file; give a params file (YAML)")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: {size:,} bytes; a params file is a few kB (at most {MAX_FILE_BYTES:,} bytes)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}); "
                          "save it as UTF-8") from None


def parse_yaml(text: str, source: str, prefix: str = "") -> Any:
    """YAML from ``source`` (a file, or a --set value whose key is ``prefix``), refused with a
    ConfigError naming the source if it is not YAML, repeats a key in a mapping (YAML would keep
    the last one silently), or expands past MAX_VALUES values through its aliases."""
    stream = io.StringIO(text)
    stream.name = source  # YAML's own messages then name the file (or override), with the line and column
    loader = _Loader(stream)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        problems = _NodeCheck(source).problems(root, prefix)
        if problems:
            raise ConfigError("\n  ".join(problems))
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be params") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise ConfigError(f"{source}: a value cannot be read ({str(exc).split(';')[0][:200]})") from None
    finally:
        loader.dispose()


class _NodeCheck:
    """Checks on the composed YAML, before any value is built: duplicate keys (each with its line
    and dotted key) and the number of values once aliases are expanded. Each node is visited once,
    so an alias bomb is measured, never expanded."""

    def __init__(self, source: str):
        self.source, self.found, self.sizes, self.open = source, [], {}, set()

    def problems(self, root: yaml.Node, prefix: str) -> list[str]:
        """Every problem, in the order of the file's lines."""
        size = self.size(root, prefix)
        if not self.found and size > MAX_VALUES:
            where = next((key for key, node in self.items(root, prefix) if self.sizes[id(node)] > MAX_VALUES), prefix)
            self.found.append((0, f"{self.source}: {where or 'the document'}: more than {MAX_VALUES:,} values once "
                                  "YAML aliases are expanded (an alias bomb?); write the values out"))
        return [message for _, message in sorted(self.found)]

    def size(self, node: yaml.Node, path: str) -> int:
        """Values under ``node`` with aliases expanded (a mapping counts its keys too)."""
        if id(node) in self.open:  # an alias inside its own anchor: a structure that contains itself
            line = node.start_mark.line + 1
            self.found.append((line, f"{self.source}: line {line}: {path}: refers to itself (a recursive YAML alias)"))
            return 1
        if id(node) not in self.sizes:
            self.open.add(id(node))
            self.check_keys(node, path)
            self.sizes[id(node)] = 1 + sum(1 + self.size(child, key) if key_node else self.size(child, key)
                                           for key_node, key, child in self.children(node, path))
            self.open.discard(id(node))
        return self.sizes[id(node)]

    def children(self, node: yaml.Node, path: str):
        """(key node or None, dotted key, child node) of a mapping's values and merged mappings,
        a sequence's items."""
        if isinstance(node, yaml.MappingNode):
            for key_node, value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base' merges base's keys here
                    yield None, path, value
                else:
                    yield key_node, _dotted(path, key_node), value
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                yield None, f"{path}.{index}" if path else str(index), item

    def items(self, node: yaml.Node, path: str):
        return [(key, child) for key_node, key, child in self.children(node, path) if key_node is not None]

    def check_keys(self, node: yaml.Node, path: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        first_line: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            line, seen = key_node.start_mark.line + 1, first_line.get((key_node.tag, key_node.value))
            if seen is None:
                first_line[(key_node.tag, key_node.value)] = line
            else:
                self.found.append((line, f"{self.source}: line {line}: {_dotted(path, key_node)}: duplicate key (first "
                                         f"at line {seen}); YAML would keep only the last one, silently"))


def _dotted(path: str, key_node: yaml.Node) -> str:
    key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "<key>"
    key = key if len(key) <= 100 else key[:99] + "…"
    return f"{path}.{key}" if path else key


def unshared(node: Any, budget: list[int] | None = None) -> Any:
    """A copy in which no two places share a mapping or list. YAML aliases (``*anchor``, ``<<:
    *anchor``) load as one shared object, so an override of one model's key would also change
    every model that aliases it. Refuses what expands past MAX_VALUES (an alias bomb)."""
    budget = [MAX_VALUES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(f"params: more than {MAX_VALUES:,} values once YAML aliases are expanded "
                          "(an alias bomb?); write the values out")
    if isinstance(node, dict):
        return {key: unshared(value, budget) for key, value in node.items()}
    if isinstance(node, list):
        return [unshared(value, budget) for value in node]
    return node


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a copy of a nested mapping; each
    changes exactly the key it names, even where the file shares a block through a YAML alias."""
    raw = unshared(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {excerpt(item)}: expected KEY.PATH=VALUE")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {excerpt(item)}: {part!r} is not a section")
        node[parts[-1]] = unshared(parse_yaml(value, f"override {excerpt(item)}", prefix=key))
    return raw
