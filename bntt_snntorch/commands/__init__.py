"""The command tier: every command line is argparse plus one call of the tiers below.

:data:`COMMANDS` is the one list of commands: ``python -m bntt_snntorch <command> [flags]`` runs
any of them (``python -m bntt_snntorch --help`` lists them), ``python train.py`` is the BNTT
seed's command line (``train``), and the console scripts named here are installed by the
package. Adding a command means one module here (``get_args_parser()``, ``main(args)``,
``run(argv)``) and one line in :data:`COMMANDS`; the CLI docs, the README check and the tier
test read this list.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One command: its module in this package, a one-line summary, its console script (if any)."""

    module: str
    summary: str
    script: str | None = None


COMMANDS: dict[str, Command] = {
    "train": Command("train", "train a spiking network or an ANN (also: python train.py)", "bntt-train"),
    "analyze": Command("analyze", "gammas and early exit, spike rates and energy of a trained run", "bntt-analyze"),
    "convert": Command(
        "convert", "convert a trained ANN to an SNN and simulate it (Lu & Sengupta 2020)", "bntt-convert"
    ),
    "compare-coding": Command("compare_coding", "rate vs direct coding: accuracy, FGSM/PGD, spikes, energy"),
    "compare-conversion": Command("compare_conversion", "full-precision vs binary ANN -> SNN conversion on digits"),
    "compare-norms": Command(
        "compare_norms", "BNTT vs BN over time, tdBN, TEBN, TAB, MPBN and none, same recipe and seeds"
    ),
    "compare-training": Command("compare_training", "BPTT vs online training (SLTT, SLTT-K, OTTT): accuracy, memory"),
    "export": Command("export", "a trained spiking run as a NIR file, with what is exact (nir extra)", "bntt-export"),
    "compare-nir": Command("compare_nir", "a network vs its NIR file read back by us, SpikingJelly and snnTorch"),
}


def command_module(name: str):
    """The module of command ``name`` (imported on demand)."""
    return importlib.import_module(f"{__name__}.{COMMANDS[name].module}")


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m bntt_snntorch <command> [flags]    (<command> --help for its flags)", "", "commands:"]
    return "\n".join(lines + [f"  {name:<{width}}  {c.summary}" for name, c in COMMANDS.items()])


def main(argv: list[str] | None = None) -> int:
    """``python -m bntt_snntorch <command> ...``: run the command; exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return command_module(name).run(rest)
