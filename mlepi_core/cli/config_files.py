"""Settings from files and ``--set`` overrides, as MACE's and phonopy's command lines take them.

``mlepi mc --config run.yaml`` reads a YAML mapping whose keys are the flags of ``mlepi mc``
(``temperature: [0, 300]``, ``samples: 500``, ``structure: AB``, ...); the file's values go
through the same parser as typed flags (so they are checked alike), and flags on the
command line win over the file. ``mlepi train ... --set lr=3e-4 --set model.num_layers=3``
overrides single settings of a training config, values read as YAML.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml


def read_mapping(path: str | Path) -> dict:
    """A YAML mapping from ``path``; ValueError (one line) for a missing, unreadable or non-mapping file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such config file: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file is a mapping of settings (key: value)")
    return data


def config_tokens(parser: argparse.ArgumentParser, settings: dict, source: str) -> list[str]:
    """Command-line tokens equivalent to ``settings`` for ``parser`` (a subcommand's parser).

    Keys are flag names with ``_`` or ``-`` (``batch_size``, ``batch-size``) or a positional's
    name; a list gives several values, true/false a switch. Unknown keys are an error that
    names the known ones."""
    options = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    positionals = {a.dest: a for a in parser._actions if not a.option_strings}
    head, tokens = [], []
    for key, value in settings.items():
        dest = str(key).replace("-", "_")
        if dest in positionals:
            head.append(str(value))
            continue
        action = options.get(dest)
        if action is None:
            known = ", ".join(sorted([*positionals, *options]))
            raise ValueError(f"{source}: unknown setting {key!r} (known: {known})")
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise ValueError(f"{source}: {key} is a switch: true or false, got {value!r}")
            tokens += [flag] if value else []
        elif isinstance(value, list):
            tokens += [flag, *map(str, value)]
        else:
            tokens += [flag, str(value)]
    return head + tokens


def without_option(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag VALUE`` / ``flag=VALUE``."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == flag:
            skip = True
        elif not token.startswith(flag + "="):
            out.append(token)
    return out


def apply_overrides(settings: dict, assignments: list[str] | None) -> dict:
    """``settings`` with each ``KEY=VALUE`` of ``assignments`` applied; dotted keys reach into
    nested mappings, values are YAML (``3e-4``, ``true``, ``[0, 300]``, ``"128x0e"``)."""
    out = yaml.safe_load(yaml.safe_dump(settings))  # a deep copy of plain data
    for item in assignments or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        value: Any = yaml.safe_load(text) if text else ""
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"--set {key}: {part!r} is not a group of settings")
            node = node[part]
        if leaf not in node:
            raise ValueError(f"--set {key}: unknown setting {leaf!r} (known: {', '.join(sorted(node))})")
        node[leaf] = like(node[leaf], value, key)
    return out


def like(current: Any, value: Any, key: str) -> Any:
    """``value`` as the type of the setting's ``current`` number (YAML 1.1 reads 3e-4 as text)."""
    if isinstance(current, (int, float)) and not isinstance(current, bool) and isinstance(value, str):
        try:
            return type(current)(float(value)) if isinstance(current, float) else int(value)
        except ValueError:
            raise ValueError(f"--set {key}: expected a number, got {value!r}") from None
    return value
