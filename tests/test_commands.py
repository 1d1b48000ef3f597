"""The command registry: one route per command (``python -m bntt_snntorch <command>``, besides
``train.py`` and the console scripts), each command argparse plus one library call; the pre-0.2 routes
still work for one release with a DeprecationWarning naming the new spelling."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from bntt_snntorch.commands import COMMANDS, command_module
from bntt_snntorch.commands import main as dispatch

ROOT = Path(__file__).resolve().parent.parent


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_python_m_bntt_snntorch_lists_and_runs_every_command(capsys):
    assert dispatch(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in COMMANDS)
    for name in COMMANDS:
        with pytest.raises(SystemExit) as stop:
            dispatch([name, "--help"])
        assert stop.value.code == 0
        assert f"bntt_snntorch {name}" in capsys.readouterr().out or name == "train"
    assert dispatch(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    result = _run("-m", "bntt_snntorch", "compare-norms", "--help")
    assert result.returncode == 0 and "--norms" in result.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_argparse_plus_one_call(name):
    """``main(args)`` is one return of one call (its arguments built from the flags)."""
    module = command_module(name)
    assert callable(module.get_args_parser) and callable(module.run)
    tree = ast.parse(Path(module.__file__).read_text())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    body = [n for n in main.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Call), name


def test_console_scripts_and_architecture_name_the_registry():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    expected = {c.script: f"bntt_snntorch.commands.{c.module}:run" for c in COMMANDS.values() if c.script}
    assert {k: v for k, v in scripts.items() if k in expected} == expected
    assert set(scripts) == set(expected)
    architecture = (ROOT / "ARCHITECTURE.md").read_text()
    assert all(f"`{name}`" in architecture for name in COMMANDS)
