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
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}, f)
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
            np.array([2051, n, 28, 28], dtype=">i4").tobytes() + images.tobytes())
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
