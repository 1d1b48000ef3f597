"""The prepared GPU check: on a machine without a GPU it says so in one line and exits 0; its GPU branch
(tests, rows, results files) runs end to end on this CPU in self-test mode (tiny sizes, Triton's
interpreter, the eager CPU kernels)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would measure it")
def test_gpu_check_without_a_gpu_prints_one_line_and_exits_0():
    result = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.count("\n") == 1 and "no CUDA GPU" in result.stdout


@pytest.mark.slow
def test_gpu_check_self_test_writes_its_results(tmp_path):
    argv = ["--self-test", "--tests", "none", "--batch-sizes", "2", "--num-steps", "2", "--iters", "1"]
    argv += ["--warmup", "0", "--rows", "a,c", "--out", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (report,) = tmp_path.glob("gpu-*.json")
    saved = json.loads(report.read_text())
    assert [r["row"] for r in saved["rows"]] == ["a", "c"] and all("train_img_s" in r for r in saved["rows"])
    assert sum("bntt" in plan for plan in saved["plans"]) == 8 and report.with_suffix(".md").is_file()  # the blocks


def test_default_recipe_table_summarises_the_seeds_and_names_emulation(tmp_path, monkeypatch):
    """The seed table's summary (mean, min of the final accuracies) and its file name: ``-emulated`` when
    the kernels are limited to another ISA by environment."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import default_recipe

    runs = [dict(seed=s, final_acc=a, best_acc=a + 0.3, epochs=20, train_eval_s=50.0 + s, wall_s=60.0 + s)
            for s, a in enumerate([99.17, 98.89, 99.44])]  # fmt: skip
    summary = default_recipe.summarise(runs)
    assert summary["mean_acc"] == pytest.approx(99.1667, abs=1e-3) and summary["min_acc"] == 98.89
    assert summary["mean_wall_s"] == pytest.approx(61.0)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    report = dict(command="c", machine=default_recipe.machine(), seeds=[0, 1, 2],
                  variants=[dict(name="default", flags="", runs=runs, summary=summary)])  # fmt: skip
    path = default_recipe.write_report(report, tmp_path)
    assert path.name.endswith("-emulated.md") and "emulation" in path.read_text()
    assert "| default | 99.17 | 98.89 |" in path.read_text()
    assert default_recipe.split_settings(["BNTT_KERNELS=eager", "A_B=x=y", "--seed", "N=1"]) == (
        {"BNTT_KERNELS": "eager", "A_B": "x=y"}, ["--seed", "N=1"]
    )  # fmt: skip


def test_side_by_side_reports_both_ratios(tmp_path):
    """The side-by-side rows (c: ours, e: the ReLU twin) at tiny sizes: the table gives each row's speed over
    the twin from the fastest steps and as the median of the rounds' paired ratios (1x for the twin itself)."""
    argv = ["--side-by-side", "c,e", "--arch", "bntt_digits", "--num-steps", "2", "--batch-size", "4"]
    argv += ["--rounds", "3", "--warmup", "1", "--out", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (report,) = tmp_path.glob("side-by-side-bntt_digits-*.json")
    rows = json.loads(report.read_text())["rows"]
    assert rows["e"]["paired_speed"] == 1.0 and 0 < rows["c"]["paired_speed"] < 100
    assert "median of the rounds" in report.with_suffix(".md").read_text()


def test_the_relu_twin_with_our_pools_computes_what_the_plain_twin_does(monkeypatch):
    """Row "e-pools" (the twin pooling as our blocks pool, on the C loops) against row "e" (torch's kernel): the
    same outputs and gradients bit for bit, so the two rows differ in speed only."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import ReLUTwin

    from bntt_snntorch import create_model
    from bntt_snntorch.layers import TimeDistributed

    monkeypatch.setenv("BNTT_KERNELS", "auto")
    model = create_model("bntt_digits", num_steps=2)
    plain, ours = ReLUTwin(model), ReLUTwin(model, our_pools=True)
    ours.load_state_dict(plain.state_dict())
    assert sum(isinstance(m, TimeDistributed) for m in ours.body) == 2
    x = torch.randn(2, 6, 1, 8, 8)
    runs = []
    for twin in (plain, ours):
        out = twin(x)
        out.backward(torch.ones_like(out))
        runs.append((out, [p.grad for p in twin.parameters()]))
    (out, grads), (out_ours, grads_ours) = runs
    assert torch.equal(out, out_ours) and all(torch.equal(a, b) for a, b in zip(grads, grads_ours))
