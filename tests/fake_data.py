"""Tiny data sets written in the real on-disk formats (CIFAR python pickles, Tiny-ImageNet folders)."""

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def write_cifar10(root: Path, per_batch: int = 6, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` with data_batch_1..5, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            "batch_label": name,
            "labels": rng.integers(0, 10, per_batch).tolist(),
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}, f)
    return folder


def write_cifar100(root: Path, n: int = 12, seed: int = 0) -> Path:
    """``root/cifar-100-python`` with train, test, meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name in ("train", "test"):
        entry = {
            "fine_labels": rng.integers(0, 100, n).tolist(),
            "coarse_labels": rng.integers(0, 20, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump(
            {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}, f
        )
    return folder


def write_tiny_imagenet(root: Path, classes=("n01443537", "n01629819", "n01641577"), per_class: int = 2, seed: int = 0):
    """``root/tiny-imagenet-200`` with train/<wnid>/images/*.JPEG, val/images + val_annotations.txt.

    Returns the val annotation list [(file, wnid)]."""
    rng = np.random.default_rng(seed)
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(classes) + "\n")
    annotations = []
    for wnid in classes:
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{wnid}_{i}.JPEG")
    for i, wnid in enumerate(reversed(classes)):
        name = f"val_{i}.JPEG"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(base / "val" / "images" / name)
        annotations.append((name, wnid))
    (base / "val" / "val_annotations.txt").write_text("".join(f"{n}\t{w}\t0\t0\t63\t63\n" for n, w in annotations))
    return annotations


def write_mnist(root: Path, n: int = 20, seed: int = 0) -> Path:
    """``root/MNIST/raw`` with the four idx files (uncompressed), as torchvision reads them."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            np.array([2051, n, 28, 28], dtype=">i4").tobytes() + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, n], dtype=">i4").tobytes() + labels.tobytes())
    return raw


def write_imagenet(root: Path, classes=("n01440764", "n01443537"), per_class: int = 2, seed: int = 0) -> Path:
    """``root/imagenet/{train,val}/<wnid>/*.JPEG`` (torchvision's ImageFolder layout), 40x48 JPEGs."""
    rng = np.random.default_rng(seed)
    base = root / "imagenet"
    for split in ("train", "val"):
        for wnid in classes:
            folder = base / split / wnid
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{wnid}_{i}.JPEG")
    return base


# ----------------------------------------------------------------------------- AEDAT4 (DVS-CIFAR10)
CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def event_packet_one_by_one(events: np.ndarray) -> bytes:
    """The EventPacket flatbuffer built struct by struct with flatbuffers' own API (cross-checks
    the library's bulk copy)."""
    import flatbuffers

    builder = flatbuffers.Builder(16 * len(events) + 64)
    builder.StartVector(16, len(events), 8)
    for t, x, y, p in reversed(events[["t", "x", "y", "p"]].tolist()):
        builder.Prep(8, 16)
        builder.Pad(3)
        builder.PrependBool(bool(p))
        builder.PrependInt16(int(y))
        builder.PrependInt16(int(x))
        builder.PrependInt64(int(t))
    elements = builder.EndVector()
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, elements, 0)
    builder.FinishSizePrefixed(builder.EndObject(), file_identifier=b"EVTS")
    return bytes(builder.Output())


def random_events(rng: np.random.Generator, n: int, label: int, width: int = 128, height: int = 128) -> np.ndarray:
    """``n`` events over 0.5 s; class ``label`` fires mostly in its own horizontal band (learnable)."""
    dtype = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", bool)])
    events = np.zeros(n, dtype=dtype)
    events["t"] = np.sort(rng.integers(0, 500_000, n))
    events["x"] = rng.integers(0, width, n)
    band = height // 10
    in_band = rng.random(n) < 0.7
    events["y"] = np.where(in_band, label * band + rng.integers(0, band, n), rng.integers(0, height, n))
    events["p"] = rng.random(n) < 0.5
    return events


def write_cifar10_dvs(root: Path, per_class: int = 100, events_per_file: int = 200, seed: int = 0) -> Path:
    """``root/CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4``: the extracted layout, no zip;
    100 per class (1,000 files) satisfies tonic's own extraction check."""
    from bntt_snntorch.data.aedat4 import write_aedat4

    rng = np.random.default_rng(seed)
    base = root / "CIFAR10DVS"
    for label, name in enumerate(CIFAR10_DVS_CLASSES):
        folder = base / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            write_aedat4(folder / f"cifar10_{name}_{i}.aedat4", random_events(rng, events_per_file, label))
    return base


# ----------------------------------------------------------------------------- ATIS .bin (N-MNIST, N-Caltech101)
def atis_records(rng: np.random.Generator, n: int, width: int, height: int, label: int = 0, overflows: int = 2,
                 x0: int = 0, y0: int = 0) -> bytes:  # fmt: skip
    """``n`` events as the 5-byte ATIS records of N-MNIST / N-Caltech101 (x, y, polarity bit 7 and a 23-bit
    microsecond time), with ``overflows`` timestamp-overflow records (y = 240) at random places; class
    ``label`` fires mostly in its own horizontal band; coordinates offset by ``(x0, y0)``."""
    times = np.sort(rng.integers(0, 2**23, n))
    band = max(1, height // 10)
    y = np.where(rng.random(n) < 0.7, (label * band) % height + rng.integers(0, band, n), rng.integers(0, height, n))
    records = np.zeros((n, 5), np.uint8)
    records[:, 0], records[:, 1] = rng.integers(0, width, n) + x0, np.minimum(y, height - 1) + y0
    records[:, 2] = ((rng.random(n) < 0.5) << 7) | (times >> 16)
    records[:, 3], records[:, 4] = (times >> 8) & 255, times & 255
    overflow = np.zeros((overflows, 5), np.uint8)
    overflow[:, 1] = 240
    return np.insert(records, np.sort(rng.integers(0, n + 1, overflows)), overflow, axis=0).tobytes()


def write_nmnist(root: Path, per_digit=(3, 1), events: int = 300, seed: int = 0) -> Path:
    """``root/NMNIST/{Train,Test}/<digit>/<nnnnn>.bin``, the layout tonic extracts ``train.zip`` / ``test.zip``
    to, with ``per_digit`` recordings of each digit per split."""
    rng = np.random.default_rng(seed)
    for split, count in zip(("Train", "Test"), per_digit):
        for digit in range(10):
            folder = root / "NMNIST" / split / str(digit)
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i:05d}.bin").write_bytes(atis_records(rng, events, 34, 34, digit))
    return root / "NMNIST"


def write_ncaltech101(root: Path, classes=("accordion", "BACKGROUND_Google", "yin_yang"), per_class: int = 10,
                      events: int = 300, seed: int = 0) -> Path:  # fmt: skip
    """``root/NCALTECH101/Caltech101/<class>/image_<nnnn>.bin``: recordings of up to 240 x 180 pixels at an
    offset (tonic shifts each to start at 0)."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / "NCALTECH101" / "Caltech101" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            width, height = int(rng.integers(150, 241)), int(rng.integers(100, 181))
            x0, y0 = rng.integers(0, 257 - width), rng.integers(0, 241 - height)  # x is a byte, y = 240 an overflow
            data = atis_records(rng, events, width, height, label, x0=int(x0), y0=int(y0))
            (folder / f"image_{i + 1:04d}.bin").write_bytes(data)
    return root / "NCALTECH101"


# ----------------------------------------------------------------------------- DVS Gesture .npy
LIGHTINGS = ("fluorescent", "fluorescent_led", "lab", "led", "natural")


def gesture_columns(rng: np.random.Generator, n: int, label: int, dtype=np.float64) -> np.ndarray:
    """``(n, 4)`` columns x, y, p, t [ms] of a recording as tonic's DVS Gesture holds them (fractional ms
    in a float array); class ``label`` fires mostly in its own band of rows."""
    columns = np.zeros((n, 4), dtype)
    band = 128 // 11
    in_band = rng.random(n) < 0.7
    columns[:, 0] = rng.integers(0, 128, n)
    columns[:, 1] = np.where(in_band, label * band + rng.integers(0, band, n), rng.integers(0, 128, n))
    columns[:, 2] = rng.random(n) < 0.5
    columns[:, 3] = np.sort(rng.random(n) * 6000.0)
    return columns


def write_dvsgesture(root: Path, counts=(1077, 264), events: int = 60, seed: int = 0) -> Path:
    """``root/DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy`` with ``counts`` recordings (the
    official 1,077 / 264 by default): users 1-23 train, 24-29 test, 11 gestures a session folder."""
    rng = np.random.default_rng(seed)
    for split, count, users in zip(("ibmGestureTrain", "ibmGestureTest"), counts, (range(1, 24), range(24, 30))):
        sessions = [f"user{u:02d}_{light}" for light in LIGHTINGS for u in users]
        for n in range(count):
            folder = root / "DVSGesture" / split / sessions[n // 11]
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{n % 11}.npy", gesture_columns(rng, events, n % 11))
    return root / "DVSGesture"
