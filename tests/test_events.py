"""Event data: real AEDAT4 files through tonic, the fixed split, the frame cache, simulated DVS digits."""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tonic
import torch
from tonic.io import read_aedat4
from torch.utils.data import DataLoader

from bntt_snntorch import encoding
from bntt_snntorch.data import CIFAR10DVS, CorruptRecordingError, DataOptions, DigitsDVS, build_datasets
from bntt_snntorch.data import events as events_module
from bntt_snntorch.data.aedat4 import event_packet, write_aedat4
from bntt_snntorch.data.events import FrameAugment, bin_events, frame_transform, stratified_split, translate

from .fake_data import event_packet_one_by_one, random_events, write_cifar10_dvs

ROOT = Path(__file__).resolve().parent.parent
OPTS = {"num_steps": 5, "size": 32, "progress": False}


@pytest.fixture(scope="session")
def dvs_root(tmp_path_factory):
    """A pristine extracted CIFAR10DVS folder (1,000 AEDAT4 files, no zip); copy it before changing it."""
    root = tmp_path_factory.mktemp("dvs")
    write_cifar10_dvs(root)
    return root


@pytest.fixture
def dvs_copy(dvs_root, tmp_path):
    shutil.copytree(dvs_root / "CIFAR10DVS", tmp_path / "CIFAR10DVS")
    return tmp_path


# ----------------------------------------------------------------------------- the file format
def test_aedat4_writer_round_trips_through_tonics_reader(tmp_path):
    events = random_events(np.random.default_rng(3), 1000, 4)
    write_aedat4(tmp_path / "r.aedat4", events, packet_size=300)  # several packets
    back = read_aedat4(str(tmp_path / "r.aedat4"))
    assert len(back) == 1000
    for ours, theirs in (("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")):
        assert np.array_equal(back[theirs].astype(np.int64), events[ours].astype(np.int64))
    # the bulk struct copy is byte-identical to flatbuffers' struct-by-struct API
    assert event_packet(events[:50]) == event_packet_one_by_one(events[:50])


def test_extracted_folder_alone_is_accepted(dvs_root):
    """tonic's own check wants CIFAR10DVS.zip and would download; ours needs the recordings only."""
    folder = dvs_root / "CIFAR10DVS"
    assert not (folder / "CIFAR10DVS.zip").exists()
    assert not _located(folder)._check_exists()
    data = CIFAR10DVS(str(dvs_root))
    assert len(data) == 1000 and sorted(set(data.targets)) == list(range(10))
    events, label = data[0]
    assert label == 0 and len(events) == 200


def test_tonics_positional_arguments(dvs_root):
    """tonic's CIFAR10DVS(save_to, transform, target_transform, transforms), positional as in tonic."""
    to_count = lambda events: len(events)  # noqa: E731
    data = CIFAR10DVS(str(dvs_root), to_count, lambda label: label + 100)
    assert data[0] == (200, 100)
    both = CIFAR10DVS(str(dvs_root), None, None, lambda events, label: (len(events), -label))
    assert both[0] == (200, 0) and both[999][1] == -9
    keywords = CIFAR10DVS(save_to=str(dvs_root), transform=to_count, target_transform=None)
    assert keywords[0] == (200, 0)


def _located(folder):
    """A bare tonic CIFAR10DVS pointed at ``folder`` (to call tonic's own existence check)."""
    obj = tonic.datasets.CIFAR10DVS.__new__(tonic.datasets.CIFAR10DVS)
    obj.location_on_system, obj.folder_name = str(folder), ""
    return obj


@pytest.mark.slow
def test_missing_folder_is_one_line_naming_it(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "--dataset",
            "cifar10-dvs",
            "--data-dir",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert str(tmp_path / "CIFAR10DVS") in res.stderr and "figshare" in res.stderr


# ----------------------------------------------------------------------------- split
def test_split_is_stratified_9_to_1_and_disjoint(dvs_root):
    data = CIFAR10DVS(str(dvs_root))
    train, test = stratified_split(data.targets)
    assert len(train) == 900 and len(test) == 100
    train_files, test_files = {data.data[i] for i in train}, {data.data[i] for i in test}
    assert not train_files & test_files
    assert np.bincount([data.targets[i] for i in test]).tolist() == [10] * 10
    # the same recordings every time, whatever order the file system lists them in: the last 10 of each class
    # in natural name order (cifar10_cat_90 .. _99)
    names = sorted(Path(f).name for f in test_files if "/cat/" in f.replace("\\", "/"))
    assert names == sorted(f"cifar10_cat_{i}.aedat4" for i in range(90, 100))


def test_train_and_test_sets_never_share_a_recording(dvs_copy):
    train, test, info = build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**OPTS))
    assert set(train.indices).isdisjoint(test.indices) and len(train) + len(test) == 1000
    assert info.in_channels == 2 and info.image_size == 32


# ----------------------------------------------------------------------------- frames and the cache
def test_frames_are_tonics_toframe(dvs_copy):
    train, test, _ = build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**OPTS, augment=()))
    frames, label = test[3]
    source = CIFAR10DVS(str(dvs_copy))
    i = test.indices[3]
    events, expected_label = source[i]
    expected = frame_transform(CIFAR10DVS.sensor_size, 32, 5)(events)
    assert frames.shape == (5, 2, 32, 32) and frames.dtype == torch.int16 and label == expected_label
    assert torch.equal(frames, torch.from_numpy(expected.astype(np.int16)))
    assert not list((dvs_copy / "frame-cache").glob("*/0*.npy"))  # gathered into frames.npy
    full, _, _ = build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(num_steps=3, progress=False))
    assert full[0][0].shape == (3, 2, 128, 128)  # no --dvs-size: the sensor's size


@pytest.mark.parametrize("seed", range(4))
def test_bincount_frames_equal_tonics_toframe_to_the_count(seed):
    """Fresh random recordings (sorted and not, empty, spans shorter than T, every size): the one-bincount
    binning equals tonic's Downsample + ToFrame(n_time_bins) exactly."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("p", "?")])  # what tonic's reader returns
    for _ in range(40):
        n = int(rng.integers(0, 4000))
        events = np.zeros(n, dtype)
        span = int(rng.choice([3, 19, 20, 1000, 1_300_000]))
        times = np.sort(rng.integers(0, span, n) + int(rng.integers(0, 10**9)))
        if rng.random() < 0.2 and n > 2:  # out of order inside, first and last in place (as tonic assumes)
            times[1:-1] = rng.permutation(times[1:-1])
        events["t"] = times
        events["x"], events["y"], events["p"] = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.random(n) < 0.5
        steps, size = int(rng.choice([1, 3, 20, 25])), int(rng.choice([128, 64, 48, 17]))
        ours = bin_events(events, steps, size, (128, 128, 2))
        tonics = (
            frame_transform((128, 128, 2), size, steps)(events.copy())
            if n
            else np.zeros((steps, 2, size, size), np.int16)
        )
        assert ours.dtype == np.int16 and ours.shape == (steps, 2, size, size)
        assert np.array_equal(ours, tonics.astype(np.int16))


class _Recordings:
    """A tiny source of random recordings; ``stop_at`` raises KeyboardInterrupt there (a killed pass)."""

    def __init__(self, count, stop_at=None):
        rng = np.random.default_rng(0)
        self.events = [random_events(rng, 300, 1) for _ in range(count)]
        self.targets, self.data, self.stop_at, self.decoded = [0] * count, [f"r{i}" for i in range(count)], stop_at, []

    def __len__(self):
        return len(self.events)

    def __getitem__(self, i):
        if i == self.stop_at:
            raise KeyboardInterrupt
        self.decoded.append(i)
        return self.events[i], 0


def test_a_killed_first_pass_resumes_where_its_progress_was_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(events_module, "SAVE_DONE_SECONDS", 0.0)  # saved every SAVE_DONE_EVERY recordings
    spec = events_module.CacheSpec("toy", 4, 16, "bin_events", "toy")
    frames_of = lambda events: bin_events(events, 4, 16, (128, 128, 2))  # noqa: E731
    args = (tmp_path / "cache", frames_of, (4, 2, 16, 16))
    with pytest.raises(KeyboardInterrupt):
        events_module.build_frame_cache(_Recordings(200, stop_at=150), spec, *args, progress=False)
    assert not (tmp_path / "cache" / spec.key() / "manifest.json").exists()
    resumed = _Recordings(200)
    folder, indices = events_module.build_frame_cache(resumed, spec, *args, progress=False)
    saved = 2 * events_module.SAVE_DONE_EVERY  # the progress saved before recording 150
    assert resumed.decoded == list(range(saved, 200)) and indices == list(range(200))
    fresh = _Recordings(200)
    expected = np.stack([frames_of(fresh[i][0]) for i in range(200)])
    assert np.array_equal(np.load(folder / "frames.npy"), expected)
    assert sorted(p.name for p in folder.iterdir()) == ["frames.npy", "manifest.json"]


def test_cache_is_reused_and_rebuilt_when_a_parameter_changes(dvs_copy, monkeypatch):
    build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**OPTS))
    cache = dvs_copy / "frame-cache"
    assert len(list(cache.iterdir())) == 1
    calls = []
    import bntt_snntorch.data.events as events_module

    original = events_module.bin_events
    monkeypatch.setattr(events_module, "bin_events", lambda *a, **k: calls.append(1) or original(*a, **k))
    train, _, _ = build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**OPTS))
    assert calls == [] and len(train) == 900  # second time: arrays read, nothing decoded
    build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**{**OPTS, "num_steps": 6}))
    assert len(calls) == 1000 and len(list(cache.iterdir())) == 2  # T changed: a new cache
    build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**{**OPTS, "size": 16}))
    assert len(list(cache.iterdir())) == 3
    manifest = json.loads(next(p for p in cache.glob("*/manifest.json")).read_text())
    assert manifest["tonic"] == tonic.__version__ and "ToFrame" in manifest["spec"]["transform"]
    # a recording replaced on disk changes the key too
    victim = next((dvs_copy / "CIFAR10DVS" / "cat").glob("*.aedat4"))
    write_aedat4(victim, random_events(np.random.default_rng(9), 50, 3))
    build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**OPTS))
    assert len(list(cache.iterdir())) == 4


def test_parallel_build_equals_serial(dvs_root, tmp_path):
    serial, parallel = tmp_path / "s", tmp_path / "p"
    for dst in (serial, parallel):
        shutil.copytree(dvs_root / "CIFAR10DVS", dst / "CIFAR10DVS")
    a, _, _ = build_datasets("cifar10-dvs", serial, options=DataOptions(**OPTS, augment=()))
    b, _, _ = build_datasets("cifar10-dvs", parallel, options=DataOptions(**OPTS, augment=(), num_workers=2))
    for n in (0, 450, 899):
        assert torch.equal(a[n][0], b[n][0])


def test_corrupt_recording_is_named_or_skipped(dvs_copy):
    victim = dvs_copy / "CIFAR10DVS" / "dog" / "cifar10_dog_7.aedat4"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 100])  # the last packet cut short
    with pytest.raises(CorruptRecordingError, match="cifar10_dog_7.aedat4.*--skip-corrupt"):
        build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**OPTS))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, test, _ = build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**OPTS, skip_corrupt=True))
    assert any("cifar10_dog_7" in str(w.message) for w in caught)
    assert len(train) + len(test) == 999


@pytest.mark.slow
def test_cli_reports_a_corrupt_recording_in_one_line(dvs_copy):
    (dvs_copy / "CIFAR10DVS" / "cat" / "cifar10_cat_3.aedat4").write_bytes(b"not an aedat file")
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "--dataset",
            "cifar10-dvs",
            "--data-dir",
            str(dvs_copy),
            "--dvs-size",
            "16",
            "--T",
            "3",
            "--no-progress",
            "--output-dir",
            str(dvs_copy / "run"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert last.startswith("error: cannot read") and "cifar10_cat_3.aedat4" in last


# ----------------------------------------------------------------------------- augmentation
def _inside_events(rng, n=400, margin=6, size=32):
    events = random_events(rng, n, 2, width=size, height=size)
    events["x"] = rng.integers(margin, size - margin, n)
    events["y"] = rng.integers(margin, size - margin, n)
    return events


def test_frame_flip_equals_flipping_the_events():
    events = _inside_events(np.random.default_rng(0))
    to_frame = tonic.transforms.ToFrame(sensor_size=(32, 32, 2), n_time_bins=4)
    flipped = tonic.transforms.RandomFlipLR(sensor_size=(32, 32, 2), p=1.0)(events.copy())
    assert np.array_equal(FrameAugment(flip_p=1.0)(to_frame(events)), to_frame(flipped))


@pytest.mark.parametrize("dx,dy", [(3, -2), (-5, 4), (0, 0)])
def test_frame_translation_equals_shifting_the_events(dx, dy):
    events = _inside_events(np.random.default_rng(1))
    to_frame = tonic.transforms.ToFrame(sensor_size=(32, 32, 2), n_time_bins=4)
    shifted = events.copy()
    shifted["x"] += dx
    shifted["y"] += dy
    assert np.array_equal(translate(to_frame(events), dx, dy), to_frame(shifted))


def test_augmentation_only_on_training(dvs_copy):
    train, test, _ = build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**OPTS))
    assert isinstance(train.augment, FrameAugment) and train.augment.max_shift > 0 and test.augment is None
    draws = []
    for epoch in range(12):
        train.set_epoch(epoch)
        draws.append(train[0][0])
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # training frames vary from epoch to epoch
    assert all(torch.equal(test[0][0], test[0][0]) for _ in range(5))  # test frames do not


def test_augmentation_draws_depend_only_on_seed_epoch_and_recording(dvs_copy):
    """A resumed run draws skipped batches again and the loader's workers split batches otherwise: a
    recording's flip and shift must not depend on either, nor on torch's global generator."""
    train, _, _ = build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**OPTS, seed=5))
    order = [4, 1, 7, 0, 3]
    train.set_epoch(2)
    one_by_one = [train[n][0] for n in order]
    torch.manual_seed(9)
    np.random.seed(9)
    torch.rand(100)
    for batch_size, workers in ((1, 0), (2, 0), (5, 2)):
        loader = DataLoader(train, batch_size=batch_size, sampler=order, num_workers=workers)
        batched = [frames for batch, _ in loader for frames in batch]
        assert all(torch.equal(a, b) for a, b in zip(one_by_one, batched, strict=True))
    other, _, _ = build_datasets("cifar10-dvs", dvs_copy, options=DataOptions(**OPTS, seed=6))
    other.set_epoch(2)
    assert any(not torch.equal(a, other[n][0]) for a, n in zip(one_by_one, order))


# ----------------------------------------------------------------------------- simulated event digits
def test_digits_dvs_events_look_like_a_dvs_recording():
    data = DigitsDVS()
    events, label = data[5]
    again, _ = data[5]
    assert np.array_equal(events, again)  # deterministic per recording
    assert len(events) > 200 and events["p"].any() and (~events["p"]).any()  # both polarities
    assert (np.diff(events["t"]) >= 0).all() and events["t"].max() <= 300_000
    assert events["x"].min() >= 0 and events["x"].max() < 16 and events["y"].max() < 16
    # events come from the strokes as they move, not from background far from any ink
    from scipy import ndimage

    counts = np.zeros((16, 16))
    np.add.at(counts, (events["y"], events["x"]), 1)
    near_ink = ndimage.binary_dilation(np.kron(data.images[5], np.ones((2, 2))) > 0.05, iterations=2)
    assert (~near_ink).sum() > 10
    assert counts[near_ink].mean() > 5 * counts[~near_ink].mean()
    assert label == data.targets[5]


@pytest.mark.slow
def test_digits_dvs_trains_end_to_end_through_train_py(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "--dataset",
            "digits-dvs",
            "--data-dir",
            str(tmp_path),
            "--num_epochs",
            "1",
            "--max-batches",
            "3",
            "--num_workers",
            "2",
            "--channels-last",
            "--no-progress",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["encode"] == "events" and config["num_steps"] == 10 and config["augment"] == ["flip", "translate"]
    assert (out / "metrics.csv").read_text().count("\n") == 2 and len(list((tmp_path / "frame-cache").iterdir())) == 1


@pytest.mark.slow
def test_cifar10_dvs_short_training_run(dvs_copy):
    out = dvs_copy / "run"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "--dataset",
            "cifar10-dvs",
            "--data-dir",
            str(dvs_copy),
            "--arch",
            "vgg9",
            "--dvs-size",
            "32",
            "--T",
            "4",
            "--batch_size",
            "8",
            "--num_epochs",
            "1",
            "--max-batches",
            "2",
            "--num_workers",
            "0",
            "--no-progress",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["dvs_size"] == 32 and config["num_steps"] == 4 and config["arch"] == "vgg9"
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert ckpt["model"]["features.0.synapse.weight"].shape[1] == 2  # two polarity channels


def test_encode_flag_is_refused_for_event_data():
    from bntt_snntorch.commands.train import config_from_args, get_args_parser
    from bntt_snntorch.training import ConfigError

    with pytest.raises(ConfigError, match="event frames: leave out --encode p"):
        config_from_args(get_args_parser().parse_args(["--dataset", "digits-dvs", "--encode", "p"]))
    with pytest.raises(ValueError, match=r"expected event frames \(B, T=4"):
        encoding.encode(torch.zeros(2, 3, 2, 8, 8), 4, "events")


def test_only_a_recording_the_decoder_or_the_sensor_rejects_is_reported_a_bug_propagates():
    """The frame builder reports what the decoder raises for a file it cannot read, and events that do not fit the
    sensor, as a bad recording (one line naming it); any other error (a bug in the binning, here) propagates."""
    from bntt_snntorch.data.events import BadEvents, _FrameBuilder

    class Source:
        data = ["good.aedat4", "cut.aedat4"]

        def __getitem__(self, i):
            if i == 1:
                raise RuntimeError("failed to fill whole buffer")  # aedat's reader on a truncated file
            return np.zeros(3), 0

    def bad_events(events):
        raise BadEvents("an event lies outside the 16x16 frame (tonic: IndexError)")

    assert _FrameBuilder(Source(), lambda e: e, [1])[0] == (
        1,
        None,
        "cut.aedat4: RuntimeError: failed to fill whole buffer",
    )
    assert _FrameBuilder(Source(), bad_events, [0])[0][2].startswith("good.aedat4: BadEvents: an event lies outside")

    def buggy(events):
        raise TypeError("unsupported operand type(s) for *: 'NoneType' and 'int'")

    with pytest.raises(TypeError, match="unsupported operand"):
        _FrameBuilder(Source(), buggy, [0])[0]
