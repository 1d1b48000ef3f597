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


@pytest.mark.parametrize(
    "argv,new",
    [
        (["-m", "bntt_snntorch.analyze", "--help"], "python -m bntt_snntorch analyze"),
        (["-m", "bntt_snntorch.compare_norms", "--help"], "python -m bntt_snntorch compare-norms"),
        (["-m", "bntt_snntorch.commands.convert", "--help"], "python -m bntt_snntorch convert"),
        (["train.py", "convert", "--help"], "python -m bntt_snntorch convert"),
    ],
)
def test_old_routes_still_run_with_a_deprecation_warning(argv, new):
    result = _run(*argv)
    assert result.returncode == 0 and "usage:" in result.stdout
    assert "DeprecationWarning" in result.stderr and new in result.stderr


def test_old_python_names_still_work_with_a_deprecation_warning(tmp_path):
    from bntt_snntorch.commands import analyze, convert

    with pytest.warns(DeprecationWarning, match="analyze_run"):
        with pytest.raises(Exception, match="no checkpoint"):
            analyze.analyze(tmp_path / "missing")
    with pytest.warns(DeprecationWarning, match="convert_run"):
        with pytest.raises(Exception, match="no checkpoint"):
            convert.convert_checkpoint(tmp_path / "missing", tmp_path / "out", norm=10)
    import bntt_snntorch.compare_coding as old

    with pytest.warns(DeprecationWarning, match="bntt_snntorch.compare_coding is deprecated"):
        assert callable(old.get_args_parser)
