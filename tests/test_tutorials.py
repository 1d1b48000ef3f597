"""The tutorials run end to end in quick mode and produce what they describe; each opens as a notebook."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from .fake_data import write_nmnist

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def _run(name: str, tmp_path: Path, prelude: str = "") -> str:
    """Run tutorial ``name`` in quick mode in a fresh process (after the Python lines ``prelude``, if any)."""
    script = str(ROOT / "tutorials" / name)
    launch = f"{prelude}\nimport runpy\nrunpy.run_path({script!r}, run_name='__main__')"
    command = ["-c", launch] if prelude else [script]
    env = {
        **os.environ,
        "BNTT_TUTORIAL_QUICK": "1",
        "BNTT_TUTORIAL_OUT": str(tmp_path / "out"),
        "BNTT_TUTORIAL_DATA": str(tmp_path / "data"),
        "BNTT_RESULTS_DIR": str(ROOT / "results"),
        "MPLBACKEND": "Agg",
    }
    res = subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_there_are_nine_tutorials_in_jupytext_percent_format():
    assert [t.name[:2] for t in TUTORIALS] == ["01", "02", "03", "04", "05", "06", "07", "08", "09"]
    for path in TUTORIALS:
        notebook = jupytext.read(path)
        kinds = [cell.cell_type for cell in notebook.cells]
        assert kinds.count("markdown") >= 3 and kinds.count("code") >= 3, path.name
        assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# Tutorial")


def test_01_bntt_in_snntorch(tmp_path):
    out = _run("01_bntt_in_snntorch.py", tmp_path)
    drop_in = float(re.search(r"drop-in: largest difference to snnTorch (\S+)", out).group(1))
    multi = float(re.search(r"multi-step vs the per-step loop: largest difference (\S+)", out).group(1))
    assert drop_in < 1e-5 and multi < 1e-4
    accuracy = float(re.search(r"test accuracy (\S+) %", out).group(1))
    assert accuracy > 30  # two quick epochs: well above chance (10 %)
    assert (tmp_path / "out" / "gammas.png").stat().st_size > 10_000


def test_02_event_data(tmp_path):
    out = _run("02_event_data.py", tmp_path)
    assert "frames: (10, 2, 16, 16)" in out and "1437 training / 360 test recordings" in out
    assert (tmp_path / "out" / "frames.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "digit0.aedat4").read_bytes().startswith(b"#!AER-DAT4.0")
    assert len(list((tmp_path / "data" / "frame-cache").glob("*/frames.npy"))) == 1
    assert (tmp_path / "out" / "run" / "metrics.csv").exists()


def test_03_early_exit_and_energy(tmp_path):
    out = _run("03_early_exit_and_energy.py", tmp_path)
    accuracies = [float(a) for a in re.findall(r"after +\d+ steps: (\S+) %", out)]
    assert len(accuracies) == 3 and accuracies[-1] > 50
    assert re.search(r"exit at step \d+ of 10", out) and "total  ANN" in out
    for png in ("accuracy_vs_steps.png", "energy.png"):
        assert (tmp_path / "out" / png).stat().st_size > 10_000


def test_04_rate_vs_direct(tmp_path):
    _run("04_rate_vs_direct.py", tmp_path)
    with open(tmp_path / "out" / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["coding"], r["T"]) for r in rows) == [
        ("direct", "2"),
        ("direct", "4"),
        ("rate (Poisson)", "2"),
        ("rate (Poisson)", "4"),
    ]
    assert (tmp_path / "out" / "accuracy_vs_eps.png").exists()


def test_05_ann_to_snn_conversion(tmp_path):
    out = _run("05_ann_to_snn_conversion.py", tmp_path)
    for precision in ("fp", "binary"):
        ann, snn_acc = map(float, re.search(rf"{precision}: ANN (\S+) %, SNN after 30 steps (\S+) %", out).groups())
        assert ann > 30 and abs(snn_acc - ann) < 15  # 4 quick epochs; the full run is in results/bsnn-digits
    assert (tmp_path / "out" / "accuracy_vs_time.png").stat().st_size > 10_000


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_readme_links_every_tutorial(path):
    assert f"tutorials/{path.name}" in (ROOT / "README.md").read_text()


def test_06_temporal_normalisation(tmp_path):
    out = _run("06_temporal_normalisation.py", tmp_path)
    differences = re.findall(r"^(\w+) +(\S+) +multi-step vs per step: (\S+)$", out, re.M)
    assert [d[0] for d in differences] == ["bntt", "bn", "tdbn", "tebn", "none"]
    assert [d[1] for d in differences] == [
        "BatchNormTT2d",
        "BatchNormOverTime2d",
        "ThresholdDependentBatchNorm2d",
        "TemporalEffectiveBatchNorm2d",
        "-",
    ]
    assert all(float(d[2]) < 1e-4 for d in differences)
    with open(tmp_path / "out" / "study" / "comparison.csv") as f:
        assert [r["norm"] for r in csv.DictReader(f)] == ["bntt", "tebn"]
    assert out.count("# Temporal normalisation on") >= 2  # the committed studies are printed


def test_07_online_training(tmp_path):
    out = _run("07_online_training.py", tmp_path)
    found = re.findall(r"^(\w+) +peak saved for backward:.*\n +grows (\S+)x", out, re.M)
    growth = {rule: float(g) for rule, g in found}
    assert set(growth) == {"bptt", "sltt", "ottt"}
    assert growth["bptt"] > 3 and growth["sltt"] < 1.1 and growth["ottt"] < 1.1  # T = 4 -> 16 in quick mode
    cosines = re.findall(r"^(sltt|ottt): cosine with BPTT per layer: (.*)$", out, re.M)
    assert [c[0] for c in cosines] == ["sltt", "ottt"]
    assert all(0.0 < float(v.split(": ")[1]) <= 1.0 for _, line in cosines for v in line.split(", "))
    assert re.search(r"OTTT, 1 epochs: test accuracy \S+ %", out)
    assert (tmp_path / "out" / "memory_vs_T.png").stat().st_size > 10_000
    assert out.count("# BPTT vs online training on") >= 2  # the committed studies are printed


def test_08_deploy_with_nir(tmp_path):
    pytest.importorskip("nir")
    pytest.importorskip("spikingjelly.activation_based.nir_exchange")
    out = _run("08_deploy_with_nir.py", tmp_path)
    assert "exact: True" in out and (tmp_path / "out" / "model.nir").stat().st_size > 1000
    assert re.search(r"trained (\S+) %, our import \1 %, equal: True", out)
    assert re.search(r"SpikingJelly \S+ %, largest difference", out)
    assert re.search(r"\d+ of \d+ nodes approximate", out) and "scale and shift per step" in out


#: N-MNIST's completeness check lowered to the fixture's 300 / 100 recordings (the tutorial itself asks for all)
SMALL_NMNIST = """
import dataclasses
from bntt_snntorch.data import event_sets
train, test = event_sets.NMNIST.parts
parts = (dataclasses.replace(train, count=300), dataclasses.replace(test, count=100))
event_sets.NMNIST = dataclasses.replace(event_sets.NMNIST, parts=parts)
"""


def test_09_nmnist_as_snntorch_tutorial_7(tmp_path):
    write_nmnist(tmp_path / "data", per_digit=(30, 10))
    out = _run("09_nmnist_as_snntorch_tutorial_7.py", tmp_path, prelude=SMALL_NMNIST)
    assert "N-MNIST: 300 training / 100 test recordings, 10 classes" in out
    assert "frames equal tonic's reader + ToFrame: True" in out
    assert float(re.search(r"largest difference of the output membranes (\S+)", out).group(1)) < 1e-4
    assert re.search(r"per step: \d+ ms an iteration, test accuracy \S+ %", out)
    assert re.search(r"multi-step: \d+ ms an iteration \(\S+x the per-step loop\), test accuracy \S+ %", out)
    for png in ("frames.png", "loss.png"):
        assert (tmp_path / "out" / png).stat().st_size > 10_000
