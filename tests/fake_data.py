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
    from bntt_snntorch.data.aedat4 import write_aedat4

    """``root/CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4``: the extracted layout, no zip;
    100 per class (1,000 files) satisfies tonic's own extraction check."""
    rng = np.random.default_rng(seed)
    base = root / "CIFAR10DVS"
    for label, name in enumerate(CIFAR10_DVS_CLASSES):
        folder = base / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            write_aedat4(folder / f"cifar10_{name}_{i}.aedat4", random_events(rng, events_per_file, label))
    return base
