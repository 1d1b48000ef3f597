"""N-MNIST, DVS Gesture and N-Caltech101 in tonic's layouts: readers, frames, splits, missing data, training.

Every recording is written in its real on-disk format (5-byte ATIS ``.bin`` records with timestamp overflows,
``(N, 4)`` ``.npy`` columns) and read back by tonic's own data sets as the reference.
"""

import dataclasses
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tonic

from bntt_snntorch.data import DataOptions, DatasetNotFoundError, build_datasets, event_sets
from bntt_snntorch.data.event_readers import read_atis_bin, read_gesture_npy, read_ncaltech_bin
from bntt_snntorch.data.events import CorruptRecordingError, frame_transform

from .fake_data import atis_records, gesture_columns, write_dvsgesture, write_ncaltech101, write_nmnist

ROOT = Path(__file__).resolve().parent.parent
NMNIST_SMALL = (3, 1)  # recordings of each digit in Train, Test
NCALTECH_CLASSES = ("accordion", "BACKGROUND_Google", "yin_yang")


def small(spec: event_sets.EventSet, *counts: int) -> event_sets.EventSet:
    """``spec`` with the complete counts of its parts lowered to a fixture's."""
    return dataclasses.replace(spec, parts=tuple(dataclasses.replace(p, count=c) for p, c in zip(spec.parts, counts)))


@pytest.fixture
def small_sets(monkeypatch):
    """The three sets' completeness checks set to the fixtures' counts (DVS Gesture's fixture has the real ones)."""
    monkeypatch.setattr(event_sets, "NMNIST", small(event_sets.NMNIST, 30, 10))
    monkeypatch.setattr(event_sets, "NCALTECH101", small(event_sets.NCALTECH101, 30))
    monkeypatch.setattr(event_sets, "NCALTECH101_CLASSES", len(NCALTECH_CLASSES))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One data root with all three sets written (N-MNIST and N-Caltech101 small, DVS Gesture at its real
    1,077 / 264); copy it before changing it."""
    root = tmp_path_factory.mktemp("event-sets")
    write_nmnist(root, NMNIST_SMALL)
    write_ncaltech101(root, NCALTECH_CLASSES)
    write_dvsgesture(root)
    return root


@pytest.fixture
def data_root(written, tmp_path):
    """A private copy of :func:`written` (its frame cache is this test's)."""
    for name in ("NMNIST", "NCALTECH101", "DVSGesture"):
        shutil.copytree(written / name, tmp_path / name)
    return tmp_path


def _tonic_set(cls, *args, **kwargs):
    """tonic's own data set on the fixture (its download check, which wants the archives too, skipped)."""
    checked = type(cls.__name__, (cls,), {"_check_exists": lambda self: True})
    return checked(*args, **kwargs)


# ----------------------------------------------------------------------------- readers
@pytest.mark.parametrize("overflows", [0, 1, 7])
def test_atis_reader_equals_tonics(tmp_path, overflows):
    rng = np.random.default_rng(overflows)
    path = tmp_path / "r.bin"
    path.write_bytes(atis_records(rng, 2000, 34, 34, 4, overflows=overflows))
    reference = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
    ours = read_atis_bin(path)
    assert ours.dtype == reference.dtype and np.array_equal(ours, reference)
    assert overflows == 0 or ours["t"].max() >= 2**13  # the overflow records moved later times on


def test_atis_reader_rejects_a_truncated_file_and_reads_an_empty_one(tmp_path):
    path = tmp_path / "r.bin"
    path.write_bytes(atis_records(np.random.default_rng(0), 10, 34, 34)[:-2])
    with pytest.raises(ValueError, match="5-byte events"):
        read_atis_bin(path)
    path.write_bytes(b"")
    assert len(read_atis_bin(path)) == 0
    with pytest.raises(ValueError, match="no events"):
        read_ncaltech_bin(path)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32])
def test_gesture_reader_equals_tonics(tmp_path, dtype):
    columns = gesture_columns(np.random.default_rng(1), 500, 5, dtype)
    folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_lab"
    folder.mkdir(parents=True)
    np.save(folder / "5.npy", columns)
    reference, label = _tonic_set(tonic.datasets.DVSGesture, str(tmp_path), train=True)[0]
    ours = read_gesture_npy(folder / "5.npy")
    assert label == 5 and ours.dtype == reference.dtype and np.array_equal(ours, reference)


# ----------------------------------------------------------------------------- frames equal tonic's
def _frames_by_path(dataset):
    """``{recording path: (frames, label)}`` of one of our cached sets."""
    frames = np.load(dataset.folder / "frames.npy", mmap_mode="r")
    return {dataset.recordings[i]: (frames[i], dataset.targets[i]) for i in dataset.indices}


CASES = {  # name: (tonic's data sets on the fixture, sensor, frame size asked)
    "nmnist": (
        lambda root: [_tonic_set(tonic.datasets.NMNIST, root, train=t) for t in (True, False)],
        (34, 34, 2),
        None,
    ),
    "dvsgesture": (
        lambda root: [_tonic_set(tonic.datasets.DVSGesture, root, train=t) for t in (True, False)],
        (128, 128, 2),
        32,
    ),
    "ncaltech101": (lambda root: [_tonic_set(tonic.datasets.NCALTECH101, root)], (240, 240, 2), 60),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_frames_equal_tonics_reader_and_toframe_to_the_count(name, data_root, small_sets):
    tonic_sets, sensor, size = CASES[name]
    options = DataOptions(num_steps=5, size=size, augment=(), progress=False)
    train, test, info = build_datasets(name, data_root, options=options)
    transform = frame_transform(sensor, size or sensor[0], 5)
    references = [s for s in tonic_sets(str(data_root))]
    if name == "ncaltech101":  # no official split: ours is 9:1 within each class, tonic's one set holds all
        classes = sorted(set(references[0].targets))
        assert info.num_classes == 101 and len(train) == 27 and len(test) == 3
        split = {**_frames_by_path(train), **_frames_by_path(test)}
        expected = {path: classes.index(t) for path, t in zip(references[0].data, references[0].targets)}
        assert sorted(split) == sorted(expected)
        for i, path in enumerate(references[0].data):
            events, _ = references[0][i]
            frames, label = split[path]
            assert label == expected[path] and np.array_equal(frames, transform(events).astype(np.int16)), path
        return
    for ours, reference in zip((train, test), references):
        assert len(ours) == len(reference)  # the official split: tonic's train and test
        by_path = _frames_by_path(ours)
        assert sorted(by_path) == sorted(reference.data)
        for i, path in enumerate(reference.data):
            events, label = reference[i]
            frames, our_label = by_path[path]
            assert our_label == label and np.array_equal(frames, transform(events).astype(np.int16)), path
        assert [ours[i][0].shape for i in (0, -1)] == [(5, 2, size or 34, size or 34)] * 2


# ----------------------------------------------------------------------------- missing, partial, archives
@pytest.mark.parametrize(
    "name, folder, count, url",
    [
        ("nmnist", "NMNIST/Train", 60000, tonic.datasets.NMNIST.train_url),
        ("dvsgesture", "DVSGesture/ibmGestureTrain", 1077, tonic.datasets.DVSGesture.train_url),
        ("ncaltech101", "NCALTECH101/Caltech101", 8709, tonic.datasets.NCALTECH101.url),
    ],
)
def test_missing_set_is_one_line_naming_folder_count_and_url(tmp_path, name, folder, count, url):
    with pytest.raises(DatasetNotFoundError) as err:
        build_datasets(name, tmp_path, options=DataOptions(progress=False))
    message = str(err.value)
    assert "\n" not in message and "--download" in message and url in message
    assert f"0 of {count} " in message and str(tmp_path / folder) in message


def test_partial_set_is_refused_with_the_count_found(data_root):
    for path in sorted((data_root / "DVSGesture" / "ibmGestureTest").glob("*/*.npy"))[:5]:
        path.unlink()
    with pytest.raises(DatasetNotFoundError, match=f"259 of 264 .npy recordings in {data_root / 'DVSGesture'}"):
        build_datasets("dvsgesture", data_root, options=DataOptions(progress=False))


def test_downloaded_archives_alone_are_extracted_as_tonic_does(written, tmp_path, small_sets):
    """N-MNIST's train.zip / test.zip and N-Caltech101's archive holding Caltech101.zip, with nothing extracted."""
    for split in ("Train", "Test"):
        shutil.make_archive(str(tmp_path / "NMNIST" / split.lower()), "zip", written / "NMNIST", split)
    inner = tmp_path / "staging" / "Caltech101.zip"
    shutil.make_archive(str(inner.with_suffix("")), "zip", written / "NCALTECH101", "Caltech101")
    (tmp_path / "NCALTECH101").mkdir()
    with zipfile.ZipFile(tmp_path / "NCALTECH101" / "N-Caltech101-archive.zip", "w") as archive:
        archive.write(inner, "Caltech101.zip")
    options = DataOptions(num_steps=3, size=16, augment=(), progress=False)
    assert [len(s) for s in build_datasets("nmnist", tmp_path, options=options)[:2]] == [30, 10]
    assert [len(s) for s in build_datasets("ncaltech101", tmp_path, options=options)[:2]] == [27, 3]
    assert len(list((tmp_path / "NMNIST" / "Train").glob("*/*.bin"))) == 30


def test_download_asks_tonic_for_the_missing_parts(written, tmp_path, monkeypatch, small_sets):
    asked = []

    def tonic_download(root):  # what tonic's NMNIST(root, train=...) leaves: the archives, extracted
        asked.append(root)
        shutil.copytree(written / "NMNIST", Path(root) / "NMNIST")

    monkeypatch.setattr(event_sets, "NMNIST", dataclasses.replace(event_sets.NMNIST, download=tonic_download))
    options = DataOptions(num_steps=3, augment=(), progress=False)
    with pytest.raises(DatasetNotFoundError):
        build_datasets("nmnist", tmp_path, download=False, options=options)
    train, test, _ = build_datasets("nmnist", tmp_path, download=True, options=options)
    assert asked == [str(tmp_path)] and (len(train), len(test)) == (30, 10)


def test_a_recording_the_reader_rejects_is_named_or_skipped(data_root, small_sets):
    bad = data_root / "NMNIST" / "Test" / "4" / "00000.bin"
    bad.write_bytes(bad.read_bytes()[:-3])
    options = DataOptions(num_steps=3, augment=(), progress=False)
    with pytest.raises(CorruptRecordingError, match="00000.bin.*5-byte events.*--skip-corrupt"):
        build_datasets("nmnist", data_root, options=options)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        train, test, _ = build_datasets("nmnist", data_root, options=dataclasses.replace(options, skip_corrupt=True))
    assert (len(train), len(test)) == (30, 9) and str(bad) not in [test.recordings[i] for i in test.indices]


# ----------------------------------------------------------------------------- training
PATCH_COUNTS = """
import dataclasses, runpy, sys
from bntt_snntorch.data import event_sets as s
train, test = s.NMNIST.parts
small = (dataclasses.replace(train, count=30), dataclasses.replace(test, count=10))
s.NMNIST = dataclasses.replace(s.NMNIST, parts=small)
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


@pytest.mark.slow
def test_nmnist_trains_through_train_py_and_records_its_split(data_root):
    """train.py itself, with the completeness check set to the fixture's 30 / 10 recordings."""
    out = data_root / "run"
    flags = ["--dataset", "nmnist", "--data-dir", str(data_root), "--T", "4", "--batch_size", "8", "--num_epochs", "1"]
    flags += ["--max-batches", "2", "--num_workers", "0", "--no-progress", "--output-dir", str(out)]
    res = subprocess.run([sys.executable, "-c", PATCH_COUNTS, *flags], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["dvs_size"] == 34 and config["encode"] == "events" and config["augment"] == ["translate"]
    assert config["data_split"] == {"rule": "official: Train / Test", "train": 30, "test": 10}


def test_ncaltech101_trains_a_101_class_net_on_its_fixed_split(data_root, small_sets):
    from bntt_snntorch.training import TrainConfig, train

    cfg = TrainConfig.from_recipe(
        dataset="ncaltech101", data_dir=str(data_root), arch="bntt_digits", dvs_size=16, num_steps=3,
        batch_size=8, num_epochs=1, max_batches=1, num_workers=0, progress=False, output_dir=str(data_root / "run"),
    )  # fmt: skip
    result = train(cfg)
    split = json.loads((data_root / "run" / "config.json").read_text())["data_split"]
    assert split["rule"].startswith("fixed") and (split["test"], len(result.rows)) == (3, 1)
    classifier = [w for k, w in result.model.state_dict().items() if k.endswith("weight") and w.ndim == 2][-1]
    assert classifier.shape[0] == 101


def test_analyze_neurobench_on_a_dvs_gesture_run(data_root):
    """NeuroBench's DVS example shape: DVS Gesture's 128x128 sensor binned to 32x32 frames, 11 classes."""
    pytest.importorskip("neurobench", reason="the [neurobench] extra is not installed")
    from bntt_snntorch.commands.analyze import run as analyze_main
    from bntt_snntorch.commands.train import get_args_parser, main

    run = data_root / "run"
    flags = ["--dataset", "dvsgesture", "--data-dir", str(data_root), "--arch", "bntt_digits", "--num_epochs", "1"]
    flags += ["--max-batches", "2", "--num_steps", "4", "--batch_size", "16", "--num_workers", "0", "--no-progress"]
    main(get_args_parser().parse_args([*flags, "--output-dir", str(run)]))
    assert analyze_main([str(run), "--neurobench", "--max-batches", "2"]) == 0
    written = json.loads((run / "analysis" / "neurobench.json").read_text())
    assert written["samples"] == 32
    total = written["comparison"][-1]
    assert total["neurobench_effective_ops"] > 0
    assert total["ours_effective_ops"] == pytest.approx(total["neurobench_effective_ops"], rel=1e-9)
    summary = (run / "analysis" / "summary.md").read_text()
    assert "on dvsgesture (T=4)" in summary and "## NeuroBench" in summary
