"""Every old route of bntt_snntorch._compat.ROUTES still works, warns naming its replacement and the
release that removes it, and gives what the replacement gives; nothing outside that list is tested here,
and nothing in the list is left untested."""

import re
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import bntt_snntorch as bn
from bntt_snntorch import _compat
from bntt_snntorch._compat import ROUTES

from .helpers import assert_close

ROOT = Path(__file__).resolve().parent.parent


def _script(*args, env=None):
    """A subprocess run from the repository root: (exit status, stdout, stderr)."""
    run = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    return run.returncode, run.stdout, run.stderr


def _as_script(module: str, argv: list[str], capsys) -> tuple[int, str]:
    """``python -m module *argv`` in this process (runpy): (exit status, stdout)."""
    old_argv = sys.argv
    sys.argv = [module, *argv]
    try:
        with pytest.raises(SystemExit) as exited, warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")  # already imported: fine
            runpy.run_module(module, run_name="__main__")
    finally:
        sys.argv = old_argv
    return exited.value.code, capsys.readouterr().out


def _module_alias(route, capsys):
    with pytest.warns(DeprecationWarning, match=re.escape(route.new)):
        code, out = _as_script(route.old, ["--help"], capsys)
    assert code == 0 and "usage: python -m bntt_snntorch" in out
    with pytest.warns(DeprecationWarning, match=f"{route.old} is deprecated"):  # importing it reads the attribute
        module = __import__(route.old, fromlist=["get_args_parser"])
    with pytest.warns(DeprecationWarning, match=f"{route.old} is deprecated"):
        assert callable(module.get_args_parser)


def _script_route(route, capsys):
    with pytest.warns(DeprecationWarning, match=re.escape(route.new)):
        code, out = _as_script(route.old.split()[-1], ["--help"], capsys)
    assert code == 0 and "usage:" in out


def _train_convert(route, capsys):
    from bntt_snntorch.commands.train import run

    with pytest.warns(DeprecationWarning, match=route.new), pytest.raises(SystemExit) as exited:
        run(["convert", "--help"])
    assert exited.value.code == 0 and "--norm-images" in capsys.readouterr().out


def _train_evaluate(route, tmp_path):
    from bntt_snntorch.commands.train import run

    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.warns(DeprecationWarning, match="python -m bntt_snntorch analyze RUN"):
        assert run(["--evaluate", str(bad)]) == 2  # analyze's own one-line error, exit status 2
    from bntt_snntorch.commands import main

    assert main(["analyze", str(bad)]) == 2


def _old_analyze(route, tmp_path):
    from bntt_snntorch.commands import analyze

    with pytest.warns(DeprecationWarning, match="analyze_run"):
        with pytest.raises(Exception, match="no checkpoint"):
            analyze.analyze(tmp_path / "missing")


def _old_convert(route, tmp_path):
    from bntt_snntorch.commands import convert

    with pytest.warns(DeprecationWarning, match="convert_run"):
        with pytest.raises(Exception, match="no checkpoint"):
            convert.convert_checkpoint(tmp_path / "missing", tmp_path / "out", norm=10)


def _old_temporal_norm(route):
    from bntt_snntorch import temporal_norm

    with pytest.warns(DeprecationWarning, match="create_norm"):
        old = temporal_norm.temporal_norm("bntt", 4, 3, dims=2, bntt_eps=1e-4)
    assert isinstance(old, bn.BatchNormTT2d) and old[0].eps == 1e-4


def _old_norms(route):
    from bntt_snntorch import temporal_norm

    with pytest.warns(DeprecationWarning, match=r"list_norms\(\)"):
        assert set(temporal_norm.NORMS) == set(bn.list_norms())


def _old_event_options(route):
    from bntt_snntorch import data

    with pytest.warns(DeprecationWarning, match="DataOptions"):
        assert data.EventOptions is data.DataOptions


def _attack_setup():
    from bntt_snntorch.analysis.robustness import PixelBox

    torch.manual_seed(0)
    model = bn.create_model("rvd_mlp", num_steps=2, in_channels=1, image_size=4).eval()
    x, y = torch.rand(3, 1, 4, 4), torch.randint(0, 10, (3,))
    return model, x, y, PixelBox((0.0,), (1.0,))


def _old_pgd_keyword(route):
    from bntt_snntorch.analysis.robustness import differentiable_encoder, pgd

    model, x, y, box = _attack_setup()
    encode = differentiable_encoder("d", 2, torch.Generator())
    new = pgd(model, x, y, 0.1, encode, box, iterations=2, random_start=False)
    with pytest.warns(DeprecationWarning, match=r"iterations="):
        old = pgd(model, x, y, 0.1, encode, box, steps=2, random_start=False)
    assert_close(old, new, atol=0, rtol=0)


def _old_robust_accuracy_keyword(route):
    from bntt_snntorch.analysis.robustness import robust_accuracy

    model, x, y, box = _attack_setup()
    args = (model, [(x, y)], "d", 2, box, [0.1], "pgd")
    new = robust_accuracy(*args, pgd_iterations=2)
    with pytest.warns(DeprecationWarning, match="pgd_iterations="):
        assert robust_accuracy(*args, pgd_steps=2) == new


def _old_flag(route):
    from bntt_snntorch.commands.compare_coding import get_args_parser

    parser = get_args_parser()
    with pytest.warns(DeprecationWarning, match="--pgd-iterations"):
        old = parser.parse_args([route.old, "3"])
    assert old.pgd_iterations == 3 == parser.parse_args(["--pgd-iterations", "3"]).pgd_iterations
    assert parser.parse_args([]).pgd_iterations == get_args_parser().parse_args([]).pgd_iterations
    assert route.old not in parser.format_help()


def _old_kernel_variable(route, monkeypatch):
    from bntt_snntorch.kernels.plan import kernel_setting

    monkeypatch.delenv("BNTT_KERNELS", raising=False)
    for old, new in (("0", "eager"), ("1", "auto")):
        monkeypatch.setenv("BNTT_COMPILED_KERNELS", old)
        with pytest.warns(DeprecationWarning, match="BNTT_KERNELS=eager"):
            assert kernel_setting() == new


def _old_norm_call(route):
    tebn = bn.TemporalEffectiveBatchNorm2d(4, 3).eval()
    x = torch.randn(2, 4, 5, 5)
    with pytest.warns(DeprecationWarning, match=r"norm.step\(x, t\)"):
        assert_close(tebn(x, 1), tebn.step(x, 1))


def _old_sequence_call(route):
    layer = bn.BatchNormTT2d(4, 3)
    x = torch.randn(3, 2, 4, 5, 5)
    with pytest.warns(DeprecationWarning, match="step_mode='m'"):
        y = layer(x)
    assert_close(y, layer.multi_step(x))


EXERCISES = {
    **{r.old: _module_alias for r in ROUTES if r.kind == "module"},
    **{r.old: _script_route for r in ROUTES if r.kind == "script"},
    **{r.old: _old_flag for r in ROUTES if r.kind == "flag"},
    "train.py convert": _train_convert,
    "train.py --evaluate RUN": _train_evaluate,
    "bntt_snntorch.commands.analyze.analyze(run, **options)": _old_analyze,
    "bntt_snntorch.commands.convert.convert_checkpoint(model, output_dir, **options)": _old_convert,
    "bntt_snntorch.temporal_norm.temporal_norm(kind, num_features, time_steps, dims, bntt_eps)": _old_temporal_norm,
    "bntt_snntorch.temporal_norm.NORMS": _old_norms,
    "bntt_snntorch.data.EventOptions": _old_event_options,
    "pgd(..., steps=)": _old_pgd_keyword,
    "robust_accuracy(..., pgd_steps=)": _old_robust_accuracy_keyword,
    "BNTT_COMPILED_KERNELS=0|1": _old_kernel_variable,
    "norm(x, t) on a norm in step_mode='m'": _old_norm_call,
    "a sequence (T, B, ...) given to a ThroughTime layer in step_mode='s'": _old_sequence_call,
}


def test_every_listed_route_has_an_exercise_and_every_exercise_a_route():
    assert set(EXERCISES) == {r.old for r in ROUTES}
    assert len({r.old for r in ROUTES}) == len(ROUTES)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.old)
def test_each_old_route_warns_and_gives_what_its_replacement_gives(route, tmp_path, monkeypatch, capsys):
    exercise = EXERCISES[route.old]
    wanted = exercise.__code__.co_varnames[: exercise.__code__.co_argcount]
    fixtures = {"tmp_path": tmp_path, "monkeypatch": monkeypatch, "capsys": capsys}
    exercise(route, **{name: fixtures[name] for name in wanted[1:]})


@pytest.mark.parametrize(
    "argv", [["-m", "bntt_snntorch.analyze"], ["-m", "bntt_snntorch.commands.convert"], ["train.py", "convert"]]
)
def test_a_command_line_route_shows_its_warning_on_the_terminal(argv):
    """Python hides DeprecationWarnings outside __main__; the command-line routes show theirs anyway."""
    code, out, err = _script(*argv, "--help")
    assert code == 0 and "usage:" in out and "DeprecationWarning" in err and "goes away in" in err


def test_the_warning_names_the_replacement_and_the_release_that_removes_it():
    with pytest.warns(DeprecationWarning) as caught:
        _compat.deprecated("bntt_snntorch.temporal_norm.NORMS")
    assert str(caught[0].message) == (
        f"bntt_snntorch.temporal_norm.NORMS is deprecated since {_compat.SINCE} and goes away in "
        f"{_compat.REMOVED_IN}; use list_norms()"
    )


def test_nothing_outside_the_compat_module_mentions_the_old_release():
    """The old routes live in the two compat modules (the library's list, the commands tier's command routes): no
    other file of the package names the release they serve."""
    old_release = re.compile(r"pre-0\.2|since 0\.2|\b0\.1 (?:run|release|route|code|name|checkpoint|compat)")
    package = ROOT / "bntt_snntorch"
    mentions = [
        str(p.relative_to(ROOT))
        for p in package.rglob("*.py")
        if p.relative_to(package).as_posix() not in ("_compat.py", "commands/compat.py")
        and old_release.search(p.read_text())
    ]
    assert mentions == []


def test_an_unknown_attribute_is_still_an_attribute_error():
    from bntt_snntorch import data, temporal_norm

    for module in (data, temporal_norm):
        with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
            module.nothing_here  # noqa: B018
