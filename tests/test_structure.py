"""The shape of the package: tiers import downward only and nothing imports in a circle; the
Python training API equals the command line; every command line the README shows parses
unchanged; the built wheel runs outside the repository."""

import ast
import csv
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from bntt_snntorch import TrainConfig, train
from bntt_snntorch.commands import COMMANDS, command_module
from bntt_snntorch.commands import train as train_command
from bntt_snntorch.models import create_model, register_model

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bntt_snntorch"
# the pre-0.2 alias modules of the commands (deprecated, one per command but train)
COMMAND_ALIASES = {f"bntt_snntorch.{c.module}" for name, c in COMMANDS.items() if name != "train"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(source: str, name: str, package: str, modules) -> set[str]:
    """The package modules the module ``name`` (in ``package``) of ``source`` imports: import statements (relative
    ones resolved; ``from . import x`` of a submodule ``x`` counts ``x``, not the package) and calls of
    ``importlib.import_module("<literal>")``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            submodules = {f"{base}.{a.name}" for a in node.names} & set(modules)
            found |= submodules if len(submodules) == len(node.names) else submodules | {base}
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("importlib.import_module", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return {m for m in found if m in modules and m != name}


def _imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports (:func:`_imported`)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = _imported(path.read_text(), name, package, modules)
    return graph


def test_an_importlib_call_counts_as_an_import():
    """A planted ``importlib.import_module`` of the commands tier in a library module is an upward arrow."""
    modules = {"bntt_snntorch.bntt", "bntt_snntorch.commands.train"}
    planted = 'import importlib\n\ndef f():\n    return importlib.import_module("bntt_snntorch.commands.train")\n'
    found = _imported(planted, "bntt_snntorch.bntt", "bntt_snntorch", modules)
    assert found == {"bntt_snntorch.commands.train"} and _tier("bntt_snntorch.commands.train") > _tier(
        "bntt_snntorch.bntt"
    )


def test_no_test_module_imports_another():
    """Shared test code lives in helper modules (tests/helpers.py, tests/backends.py, ...), not in test modules."""
    tests = Path(__file__).parent
    names = {p.stem for p in tests.glob("test_*.py")}
    offenders = [
        (path.name, alias)
        for path in tests.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        for alias in [node.module or ""] + [a.name for a in node.names]
        if alias.split(".")[-1] in names
    ]
    assert offenders == []


def _tier(module: str) -> int:
    """library 0 -> training 1 -> experiments 2 -> commands 3; the facade re-exports the tiers below."""
    if module == "bntt_snntorch":
        return 4
    if module.startswith("bntt_snntorch.commands") or module in COMMAND_ALIASES | {"bntt_snntorch.__main__"}:
        return 3
    if module.startswith("bntt_snntorch.experiments"):
        return 2
    if module.startswith("bntt_snntorch.training"):
        return 1
    return 0


def test_tiers_import_downward_only():
    upward = [(m, d) for m, deps in _imports().items() for d in deps if _tier(d) > _tier(m)]
    assert upward == []


def test_no_import_circles():
    graph = _imports()
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            # a package and the submodules it re-exports are one unit, not a circle
            if len({c for c in component if not any(o.startswith(c + ".") for o in component)}) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == []


def test_model_registry_warns_on_a_duplicate_name():
    @register_model
    def _structure_test_net(**kwargs):
        return create_model("bntt_digits", **kwargs)

    with pytest.warns(UserWarning, match="registered already"):
        register_model(_structure_test_net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert create_model("_structure_test_net", num_steps=2).num_steps == 2


def _metrics(folder: Path) -> list[dict]:
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "samples_per_s")} for r in rows]


def test_python_api_equals_the_command_line(tmp_path):
    """A notebook's call and train.py with the same settings give the same metrics."""
    argv = ["--num-epochs", "2", "--max-batches", "3", "--num-steps", "4", "--seed", "7", "--no-progress"]
    cli = train_command.main(train_command.get_args_parser().parse_args(argv + ["--output-dir", str(tmp_path / "cli")]))
    cfg = TrainConfig.from_recipe(
        "digits", num_epochs=2, max_batches=3, num_steps=4, seed=7, progress=False, output_dir=str(tmp_path / "api")
    )
    api = train(cfg)
    assert _metrics(tmp_path / "cli") == _metrics(tmp_path / "api") and len(api.rows) == 2
    assert [r["test_acc"] for r in api.rows] == [r["test_acc"] for r in cli.rows]
    assert [float(r["train_loss"]) for r in _metrics(tmp_path / "api")] == [r["train_loss"] for r in api.rows]
    assert api.best_checkpoint.is_file() and api.last_checkpoint.is_file()
    assert api.model.num_steps == 4 and not api.model.training


def test_config_rejects_unknown_fields_and_keeps_overrides():
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_recipe("digits", num_step=4)
    cfg = TrainConfig.from_recipe("rate-vs-direct", arch="vgg9", encode="d", num_steps=6)
    assert (cfg.arch, cfg.encode, cfg.num_steps, cfg.optimizer) == ("rvd_vgg9", "d", 6, "adam")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


# ----------------------------------------------------------------------------- README command lines
def _readme_commands(path: Path = ROOT / "README.md") -> list[list[str]]:
    """Every command line of the README (or of the page ``path``) as ``["train.py", ...]`` or
    ``["-m", "bntt_snntorch", name, ...]`` (a console script of the registry, e.g. ``bntt-export ...``, is
    read as its ``-m`` route)."""
    scripts = {c.script: name for name, c in COMMANDS.items() if c.script}
    text = path.read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.split("  #")[0].strip()
        if line.split(" ")[0] in scripts:
            words = shlex.split(re.sub(r"<[^>]+>", "PLACEHOLDER", line))
            commands.append(["-m", "bntt_snntorch", scripts[words[0]], *words[1:]])
            continue
        match = re.match(r"(?:torchrun(?: --\S+)* )?(?:python )?(train\.py|-m bntt_snntorch\b)(.*)", line)
        if match and not line.startswith("`"):
            words = shlex.split(re.sub(r"<[^>]+>", "PLACEHOLDER", line))
            start = next(i for i, w in enumerate(words) if w in ("train.py", "-m"))
            commands.append(words[start:])
    return commands


DOC_PAGES_WITH_COMMANDS = ["getting_started", "snntorch", "reproducing", "performance", "online", "nir"]


def test_every_readme_command_line_parses_unchanged():
    """Each is a current route (train.py, or python -m bntt_snntorch <command> of the registry), in the
    README and in the documentation pages that took over its long sections; the README shows every command."""
    readme = _readme_commands()
    assert len(readme) >= 12
    pages = [c for page in DOC_PAGES_WITH_COMMANDS for c in _readme_commands(ROOT / "docs" / f"{page}.md")]
    assert len(pages) >= 12
    seen = set()
    for words in readme + pages:
        if words[0] == "-m":
            assert words[1] == "bntt_snntorch" and words[2] in COMMANDS, words
            name, flags = words[2], words[3:]
        else:
            name, flags = "train", words[1:]
        seen.add(name)
        args = command_module(name).get_args_parser().parse_args(flags)
        if name == "train":
            assert args.evaluate is None, "train.py --evaluate is deprecated: the README shows the analyze command"
            train_command.config_from_args(args)  # recipe + flags validate without data
    assert {w[2] if w[0] == "-m" else "train" for w in readme} == set(COMMANDS), "the README shows every command"


def test_seed_spellings_are_aliases():
    rvd = train_command.config_from_args(
        train_command.get_args_parser().parse_args(
            "--recipe rate-vs-direct --dataset cifar10 --arch vgg5 --encode d --leak_mem 0.5 --T 10 --lr 1e-3 "
            "--batch_size 128".split()
        )
    )
    assert (rvd.arch, rvd.num_steps, rvd.leak_mem, rvd.batch_size, rvd.lr) == ("rvd_vgg5", 10, 0.5, 128, 1e-3)
    convert = command_module("convert")
    conv = convert.get_args_parser().parse_args(
        "--job-dir out --model run --time 100 --gpu --n_workers 2 --data d --eval_size 5".split()
    )
    assert (conv.output_dir, conv.num_steps, conv.device, conv.num_workers, conv.data_dir, conv.eval_size) == (
        "out",
        100,
        "cuda",
        2,
        "d",
        5,
    )
    both = [
        convert.get_args_parser().parse_args(f"{o} out --model run {t} 7".split())
        for o, t in (("--output-dir", "--num-steps"), ("--job_dir", "--time"))
    ]
    assert vars(both[0]) == vars(both[1])


# ----------------------------------------------------------------------------- installed, not editable
@pytest.mark.slow
def test_built_wheel_runs_from_an_empty_folder(tmp_path):
    """The wheel (not the checkout) trains from an empty folder and writes only there, on the C loops built from
    the C files it ships (a fresh build folder: nothing reused from the checkout's)."""
    dist, target, work = tmp_path / "dist", tmp_path / "site", tmp_path / "empty"
    work.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(dist.glob("bntt_snntorch-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    before = {p for p in target.rglob("*")}
    env = {**os.environ, "PYTHONPATH": str(target), "MPLBACKEND": "Agg", "BNTT_KERNELS": "c"}
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "build-cache")
    env.pop("BNTT_DATA_DIR", None), env.pop("BNTT_RUNS_DIR", None)
    where = subprocess.run(
        [sys.executable, "-c", "import bntt_snntorch; print(bntt_snntorch.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(target)), where
    res = subprocess.run(
        [str(target / "bin" / "bntt-train"), "--max-batches", "1", "--num-epochs", "1", "--no-progress"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "cannot run here" not in res.stderr and list((tmp_path / "build-cache").rglob("*.so")), res.stderr[-2000:]
    runs = list((work / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.csv").is_file() and (runs[0] / "best.pt").is_file()
    assert {p for p in target.rglob("*") if "__pycache__" not in p.parts} <= before


# ----------------------------------------------------------------------------- defaults in one place
def test_recipes_hold_only_typed_config_fields_and_build_valid_configs():
    from bntt_snntorch.training.config import _check_recipe
    from bntt_snntorch.training.recipes import DEFAULT_RECIPE_FOR_DATASET, RECIPES

    dataset_of = {recipe: dataset for dataset, recipe in DEFAULT_RECIPE_FOR_DATASET.items()}
    for name in RECIPES:
        dataset = dataset_of.get(name, "cifar10")
        cfg = TrainConfig.from_recipe(name, dataset=dataset)
        assert cfg.num_steps is None or cfg.encode != "none", name  # ANNs carry no time steps
        assert cfg.momentum is None or cfg.optimizer == "sgd", name
    for bad, match in (
        ({"arch": "vgg9", "arch_names": {}}, "not a TrainConfig field"),
        ({"arch": "vgg9", "num_steps": "25"}, "not of the field's type"),
        ({"arch": "vgg9", "optimizer": "adam", "momentum": 0.9}, "momentum means nothing"),
        ({"arch": "vgg15ab", "num_steps": 1}, "an ANN has no time steps"),
    ):
        with pytest.raises(TypeError, match=match):
            _check_recipe("bad", bad)


def test_cli_defaults_come_from_the_recipe_or_the_config():
    """No flag of train.py that names a TrainConfig field carries a default of its own."""
    from dataclasses import fields

    parser = train_command.get_args_parser()
    names = {f.name for f in fields(TrainConfig)}
    own = {a.dest: a.default for a in parser._actions if a.dest in names and a.default is not None}
    assert own == {}
    from_cli = train_command.config_from_args(parser.parse_args(["--output-dir", "x"]))
    assert from_cli == TrainConfig.from_recipe(output_dir="x")
