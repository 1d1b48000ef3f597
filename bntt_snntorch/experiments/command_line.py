"""The command line that reproduces a study: the committed tables say how they were made."""

from __future__ import annotations

from dataclasses import fields


def command_line(command: str, options, skip: tuple[str, ...] = ("progress", "device", "data_dir")) -> str:
    """``python -m bntt_snntorch <command> --flag value ...`` for the fields of ``options`` (a dataclass)
    that differ from their defaults; each field ``name`` is the flag ``--name`` with dashes."""
    default = type(options)()
    words = ["python", "-m", "bntt_snntorch", command]
    for f in fields(options):
        value = getattr(options, f.name)
        if f.name in skip or value == getattr(default, f.name) or value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag)
        elif isinstance(value, (list, tuple)):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return " ".join(words)
