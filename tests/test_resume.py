"""Training that survives: exact resume after SIGKILL, corrupt checkpoints, NaN guard, torchrun/DDP."""

import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from .fake_data import write_dvsgesture

ROOT = Path(__file__).resolve().parent.parent
SHORT = ["--num_epochs", "2", "--max-batches", "10", "--num_steps", "4", "--no-progress"]
TIMING = {"epoch_seconds", "samples_per_s"}


def _cmd(*argv):
    return [sys.executable, "train.py", *argv]


def _metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(open(run / "metrics.csv"))]


def _checkpoint_position(path: Path):
    try:
        ckpt = torch.load(path, weights_only=False)
    except Exception:
        return None
    return ckpt["epoch"], ckpt["progress"]["batches"]


def _kill_mid_epoch(run: Path, argv) -> tuple[int, int]:
    """Start training, SIGKILL it once a mid-epoch checkpoint of epoch >= 2 exists; return that position."""
    proc = subprocess.Popen(_cmd(*argv), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            position = _checkpoint_position(run / "last.pt") if (run / "last.pt").exists() else None
            if position and position[0] >= 2 and position[1] > 0:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return position
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
    pytest.fail("the run ended before it could be killed mid-epoch")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Each data set's run of :data:`SHORT` without interruption (made once for the module's tests): its folder and
    the command-line flags that made it."""
    runs = {}

    def run(dataset: str) -> tuple[Path, list[str]]:
        if dataset not in runs:
            folder = tmp_path_factory.mktemp(f"uninterrupted-{dataset}")
            flags = [*SHORT, "--dataset", dataset, "--data-dir", str(folder / "data")]
            if dataset == "dvsgesture":  # recordings in tonic's layout (the official 1,077 / 264), the digits' net
                write_dvsgesture(folder / "data")
                flags += ["--arch", "bntt_digits", "--dvs-size", "16"]
            subprocess.run(_cmd(*flags, "--output-dir", str(folder / "run")), cwd=ROOT, check=True, capture_output=True)
            runs[dataset] = folder / "run", flags
        return runs[dataset]

    return run


@pytest.mark.slow
@pytest.mark.xdist_group("uninterrupted-runs")  # one worker: the uninterrupted runs made once
@pytest.mark.parametrize("dataset", ["digits", "dvsgesture"])  # images; cached event frames (both augmented)
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, dataset, uninterrupted):
    reference, short = uninterrupted(dataset)
    interrupted = tmp_path / "interrupted"
    argv = [*short, "--save-every", "1", "--output-dir", str(interrupted)]
    epoch, batches = _kill_mid_epoch(interrupted, argv)
    assert 0 < batches < 10
    result = subprocess.run(_cmd(*argv, "--resume", "auto"), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resumed from {interrupted / 'last.pt'}" in result.stdout
    assert _metrics(interrupted) == _metrics(reference)
    a = torch.load(reference / "last.pt", weights_only=False)["model"]
    b = torch.load(interrupted / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.xdist_group("uninterrupted-runs")
def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, uninterrupted):
    reference, short = uninterrupted("digits")
    run = tmp_path / "run"
    argv = [*short, "--save-every", "1", "--output-dir", str(run)]
    _kill_mid_epoch(run, argv)
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])  # a disk that lost the end of the file
    assert (run / "last.prev.pt").exists()
    result = subprocess.run(_cmd(*argv, "--resume", "auto"), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "is unreadable" in result.stderr and "last.prev.pt" in result.stderr
    assert _metrics(run) == _metrics(reference)


@pytest.mark.slow
def test_resume_with_other_flags_is_refused(tmp_path):
    run = tmp_path / "run"
    subprocess.run(
        _cmd(*SHORT, "--num_epochs", "1", "--output-dir", str(run)), cwd=ROOT, check=True, capture_output=True
    )
    result = subprocess.run(
        _cmd(*SHORT, "--num_steps", "6", "--output-dir", str(run), "--resume", "auto"),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "num_steps=4" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(
        _cmd(
            "--lr",
            "1e8",
            "--num_epochs",
            "2",
            "--num_steps",
            "4",
            "--save-every",
            "1",
            "--no-progress",
            "--output-dir",
            str(run),
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ("non-finite" in lines[0] or "loss became" in lines[0]) and "last.pt" in lines[0]
    ckpt = torch.load(run / "last.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_layer_stats_and_tensorboard_logs(tmp_path):
    from bntt_snntorch.commands.train import get_args_parser, main

    argv = [
        "--num_epochs",
        "2",
        "--max-batches",
        "2",
        "--num_steps",
        "4",
        "--output-dir",
        str(tmp_path),
        "--no-progress",
    ]
    tensorboard = True
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        tensorboard = False
    main(get_args_parser().parse_args(argv + (["--tensorboard"] if tensorboard else [])))
    rows = list(csv.DictReader(open(tmp_path / "layer_stats.csv")))
    assert {r["epoch"] for r in rows} == {"1", "2"}
    assert {r["layer"] for r in rows} == {"features.0", "features.1", "features.3", "features.4", "features.7"}
    assert all(0 < float(r["spike_rate"]) < 1 for r in rows)
    assert any(r["mean_gamma"] for r in rows)
    if tensorboard:
        assert any((tmp_path / "tensorboard").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("training", ["bptt", "ottt"])
def test_torchrun_two_processes_equal_one_process_on_the_combined_batch(tmp_path, training):
    """2 gloo processes x 16 images == 1 process x 32 images (direct coding: no Poisson draws to align).
    BNTT statistics are synchronised over the ranks; online, the gradients are all-reduced once per batch.
    Tolerance: 1e-4 relative to each tensor's scale."""
    common = [
        "--training",
        training,
        "--encode",
        "d",
        "--num_epochs",
        "1",
        "--max-batches",
        "3",
        "--num_steps",
        "4",
        "--batch_size",
        "32",
        "--device",
        "cpu",
        "--no-progress",
    ]
    single, multi = tmp_path / "single", tmp_path / "multi"
    subprocess.run(_cmd(*common, "--output-dir", str(single)), cwd=ROOT, check=True, capture_output=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--standalone",  # a free port: the parametrized runs may overlap under pytest-xdist
            "train.py",
            *common,
            "--output-dir",
            str(multi),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x2" in result.stdout
    a = torch.load(single / "last.pt", weights_only=False)["model"]
    b = torch.load(multi / "last.pt", weights_only=False)["model"]
    for key in a:
        if a[key].is_floating_point():
            scale = a[key].abs().max().clamp(min=1e-6)
            torch.testing.assert_close(b[key] / scale, a[key] / scale, atol=1e-4, rtol=0, msg=key)


def test_train_or_resume_reuses_a_finished_run_and_finishes_one_cut_short(tmp_path):
    """What the studies call: a finished run is left alone; a run killed after its first epoch (its files as
    they were then) is resumed and ends where the uninterrupted run ends."""
    import shutil

    from bntt_snntorch.training import TrainConfig, train_or_resume

    def cfg(out):
        return TrainConfig.from_recipe("digits", num_epochs=2, max_batches=3, num_steps=3, progress=False,
                                       output_dir=str(tmp_path / out))  # fmt: skip

    finished = train_or_resume(cfg("whole"))
    stamp = (finished / "last.pt").stat().st_mtime_ns
    assert train_or_resume(cfg("whole")) == finished
    assert (finished / "last.pt").stat().st_mtime_ns == stamp, "a finished run was trained again"

    cut = tmp_path / "cut"
    shutil.copytree(finished, cut)
    (cut / "last.prev.pt").replace(cut / "last.pt")  # the checkpoint written after epoch 1
    lines = (cut / "metrics.csv").read_text().splitlines()
    (cut / "metrics.csv").write_text("\n".join(lines[:2]) + "\n")
    assert train_or_resume(cfg("cut")) == cut
    assert len(_metrics(cut)) == 2 and _metrics(cut) == _metrics(finished)

    from bntt_snntorch.training.config import ConfigError

    other = replace(cfg("whole"), label_smoothing=0.0, encode="p")  # the same folder asked with another recipe
    with pytest.raises(ConfigError, match=r"whole holds a run trained with encode 'd' \(asked: 'p'\), label_smoothing"):
        train_or_resume(other)
    assert (finished / "last.pt").stat().st_mtime_ns == stamp


def test_results_are_written_with_the_umasks_permissions_not_owner_only(tmp_path):
    import stat

    from bntt_snntorch.files import write_json

    write_json(tmp_path / "summary.json", {"a": 1})
    (tmp_path / "plain.txt").write_text("a")  # what a plain open gives
    mode = stat.S_IMODE((tmp_path / "summary.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) and mode & stat.S_IRGRP


@pytest.mark.parametrize("hard_links", [True, False])
def test_last_checkpoint_stays_in_place_while_the_next_is_written(tmp_path, monkeypatch, hard_links):
    """A kill at any moment of a save finds ``last.pt`` whole: the old file stays in place (kept as
    ``last.prev.pt`` by a hard link, or a copy where there are none) until the new one, already on disk, is
    renamed over it."""
    from bntt_snntorch import files
    from bntt_snntorch.training import checkpoint
    from bntt_snntorch.training.checkpoint import load_latest_good, save_checkpoint

    last = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, last, keep_previous=True)
    seen = []
    replace = os.replace

    def watching_replace(src, dst):  # what a kill just before this rename would leave
        if Path(dst) == last:
            seen.append((last.exists(), Path(src).stat().st_size > 0))
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", watching_replace)
    if not hard_links:
        monkeypatch.setattr(checkpoint.os, "link", lambda *a: (_ for _ in ()).throw(OSError("no hard links")))
    save_checkpoint({"epoch": 2}, last, keep_previous=True)
    assert torch.load(last)["epoch"] == 2 and torch.load(checkpoint.previous_path(last))["epoch"] == 1
    assert seen == [(True, True)]  # one rename onto last.pt, the new file's; last.pt there until then
    last.unlink()  # a last.pt lost otherwise: resume takes last.prev.pt
    with pytest.warns(UserWarning, match="resuming from .*last.prev.pt"):
        assert load_latest_good(last)[0]["epoch"] == 1


def test_while_the_next_checkpoint_is_written_the_last_two_are_two_files(tmp_path, monkeypatch):
    """``last.prev.pt`` becomes the old ``last.pt`` only once the new file is on disk: during the write they
    are the last two saves, two files, so a ``last.pt`` found corrupt then (here: cut in place) still has the
    one before (the hard link used to be made first, and a cut through one name cut both)."""
    from bntt_snntorch.training.checkpoint import previous_path, save_checkpoint

    last = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, last, keep_previous=True)
    save_checkpoint({"epoch": 2}, last, keep_previous=True)
    save, during = torch.save, []

    def watching_save(obj, f):
        same = os.path.samefile(last, previous_path(last))
        during.append((same, torch.load(last)["epoch"], torch.load(previous_path(last))["epoch"]))
        save(obj, f)

    monkeypatch.setattr(torch, "save", watching_save)
    save_checkpoint({"epoch": 3}, last, keep_previous=True)
    assert during == [(False, 2, 1)]
    assert torch.load(last)["epoch"] == 3 and torch.load(previous_path(last))["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.prev.pt", "last.pt"]  # no temporary left


def test_an_unreadable_checkpoint_falls_back_in_one_line_and_a_bug_propagates(tmp_path, monkeypatch):
    """load_latest_good falls back to ``.prev`` only for a file that cannot be read or unpickled, warning in one line
    with the cause; any other error (a bug) propagates, whatever ``.prev`` holds."""
    from bntt_snntorch.training import checkpoint

    last, prev = tmp_path / "last.pt", tmp_path / "last.prev.pt"
    torch.save({"epoch": 3}, prev)
    last.write_bytes(b"")  # a save cut before its first byte
    with pytest.warns(UserWarning, match=r"last.pt is unreadable \(EOFError: Ran out of input\); resuming from") as w:
        state, used = checkpoint.load_latest_good(last)
    assert state == {"epoch": 3} and used == prev and "\n" not in str(w[0].message)

    def buggy(*args, **kwargs):
        raise KeyError("weights_only")

    monkeypatch.setattr(torch, "load", buggy)
    with pytest.raises(KeyError, match="weights_only"):
        checkpoint.load_latest_good(last)
