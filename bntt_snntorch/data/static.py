"""Static image data sets: digits (offline default), MNIST, CIFAR-10/100, Tiny-ImageNet, ImageNet.

Each builder returns ``(train, test)`` datasets of ``(image (C, H, W), label)``
with the BNTT seed's normalisation; training sets are augmented with the
seed's random crop (padding 4) and horizontal flip.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import Dataset, TensorDataset
from torchvision import transforms

from .registry import DataOptions, DatasetInfo, DatasetNotFoundError, register_dataset


# ----------------------------------------------------------------------------- digits
def digits_split_indices(targets) -> tuple[np.ndarray, np.ndarray]:
    """The fixed digits split: stratified 80/20, ``random_state=0`` -> (train, test) indices
    (shared by ``digits`` and ``digits-dvs``)."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(targets)), test_size=0.2, stratify=targets, random_state=0)


def _digits_split():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    train, test = digits_split_indices(bunch.target)
    return images[train], images[test], bunch.target[train], bunch.target[test]


@functools.lru_cache(maxsize=1)
def _digits_stats() -> tuple[float, float]:
    """The training split's pixel mean and std (pixels scaled to [0, 1])."""
    x_train = _digits_split()[0]
    return float(x_train.mean()), float(x_train.std())


@register_dataset("digits", DatasetInfo("digits", 10, 1, 8, mean=None, std=None), stats=_digits_stats)
def digits(data_dir: Path, download: bool = False, options: DataOptions | None = None) -> tuple[Dataset, Dataset]:
    """scikit-learn's bundled 8x8 digits (1,797 images), fixed stratified 80/20 split
    (``random_state=0``), scaled to [0, 1] and standardised with the training mean/std. With
    "translate" in ``options.augment`` each training image is shifted by up to one pixel each way
    (:class:`ShiftedImages`, its draws seeded by ``options.seed`` and the epoch)."""
    x_train, x_test, y_train, y_test = _digits_split()
    mean, std = _digits_stats()

    def tensors(x, y):
        return torch.from_numpy((x - mean) / std).unsqueeze(1), torch.from_numpy(y).long()

    test = TensorDataset(*tensors(x_test, y_test))
    if options is not None and "translate" in (options.augment or ()):
        return ShiftedImages(*tensors(x_train, y_train), max_shift=1, fill=-mean / std, seed=options.seed), test
    return TensorDataset(*tensors(x_train, y_train)), test


class ShiftedImages(Dataset):
    """``(image (C, H, W), label)`` pairs of ``images`` ``(N, C, H, W)`` and ``labels`` ``(N,)``, each image
    shifted by up to ``max_shift`` pixels each way, the uncovered border ``fill`` (a random crop of the
    image padded by ``max_shift``).

    An epoch's shifts are drawn for every index at once from ``(seed, epoch)`` (:meth:`set_epoch`, which the
    trainer calls before each epoch), so an image's shift depends on nothing else: not the batch it lands in,
    the loader's workers, the process of a distributed run, nor the batches a resumed run draws again and
    skips. ``__getitems__`` (what torch's DataLoader calls for a batch) shifts a whole batch in one indexing
    pass."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, max_shift: int = 1, fill: float = 0.0,
                 seed: int = 0):  # fmt: skip
        if images.dim() != 4 or len(images) != len(labels):
            raise ValueError(
                f"ShiftedImages wants images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and "
                f"{tuple(labels.shape)}"
            )
        m = max_shift
        self.padded = torch.nn.functional.pad(images, (m, m, m, m), value=fill)
        self.labels, self.max_shift, self.seed = labels, max_shift, seed
        self.height, self.width = images.shape[-2:]
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the shifts of ``epoch``: offsets ``(N, 2)`` in ``[0, 2 * max_shift]`` into the padded images."""
        draws = np.random.default_rng([self.seed, epoch]).integers(0, 2 * self.max_shift + 1, (len(self.labels), 2))
        self.offsets = torch.from_numpy(draws)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        index = torch.as_tensor(indices)
        rows = self.offsets[index, :1] + torch.arange(self.height)  # (B, H)
        cols = self.offsets[index, 1:] + torch.arange(self.width)  # (B, W)
        channels = torch.arange(self.padded.shape[1])
        images = self.padded[index[:, None, None, None], channels[:, None, None], rows[:, None, :, None],
                             cols[:, None, None, :]]  # fmt: skip
        return list(zip(images, self.labels[index]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([index])[0]


# ----------------------------------------------------------------------------- CIFAR
def _presence_checked(base: type) -> type:
    """torchvision's CIFAR class, checking on load that the files exist rather than
    re-hashing them every time (``--download`` still verifies the archive's MD5)."""
    return type(
        base.__name__,
        (base,),
        {
            "train_list": [[name, None] for name, _ in base.train_list],
            "test_list": [[name, None] for name, _ in base.test_list],
            "meta": {**base.meta, "md5": None},
            "__doc__": _presence_checked.__doc__,
        },
    )


CIFAR10 = _presence_checked(torchvision.datasets.CIFAR10)
CIFAR100 = _presence_checked(torchvision.datasets.CIFAR100)

_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}


def _image_transforms(size: int, mean, std) -> tuple[Callable, Callable]:
    normalize = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    train = transforms.Compose([transforms.RandomCrop(size, padding=4), transforms.RandomHorizontalFlip(), *normalize])
    return train, transforms.Compose(normalize)


def _cifar(cls: type, key: str, folder: str, url_name: str, num_classes: int):
    def build(data_dir: Path, download: bool = False, options: DataOptions | None = None) -> tuple[Dataset, Dataset]:
        if not download and not (data_dir / folder).is_dir():
            raise DatasetNotFoundError(
                f"{url_name} not found: expected the folder {data_dir / folder}; download the 'CIFAR python version' "
                f"from https://www.cs.toronto.edu/~kriz/cifar.html and extract it into {data_dir}, or pass --download"
            )
        train_tf, test_tf = _image_transforms(32, *_CIFAR_STATS[key])
        try:
            return (
                cls(str(data_dir), train=True, transform=train_tf, download=download),
                cls(str(data_dir), train=False, transform=test_tf, download=False),
            )
        except RuntimeError as err:
            raise DatasetNotFoundError(
                f"{url_name} in {data_dir / folder} is incomplete ({err}); re-extract it or pass --download"
            ) from None

    return register_dataset(key, DatasetInfo(key, num_classes, 3, 32, *_CIFAR_STATS[key]))(build)


cifar10 = _cifar(CIFAR10, "cifar10", "cifar-10-batches-py", "CIFAR-10", 10)
cifar100 = _cifar(CIFAR100, "cifar100", "cifar-100-python", "CIFAR-100", 100)


# ----------------------------------------------------------------------------- MNIST
_MNIST_STATS = ((0.1307,), (0.3081,))


@register_dataset("mnist", DatasetInfo("mnist", 10, 1, 28, *_MNIST_STATS))
def mnist(data_dir: Path, download: bool = False, options: DataOptions | None = None) -> tuple[Dataset, Dataset]:
    """MNIST (28x28, 10 classes) from ``<data_dir>/MNIST/raw`` (the idx files), no augmentation."""
    raw = data_dir / "MNIST" / "raw"
    if not download and not (raw / "train-images-idx3-ubyte").exists():
        raise DatasetNotFoundError(
            f"MNIST not found: expected {raw / 'train-images-idx3-ubyte'} (and the other three idx files, "
            f"gunzipped) from https://yann.lecun.com/exdb/mnist/, or pass --download"
        )
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(*_MNIST_STATS)])
    return (
        torchvision.datasets.MNIST(str(data_dir), train=True, transform=tf, download=download),
        torchvision.datasets.MNIST(str(data_dir), train=False, transform=tf, download=False),
    )


# ----------------------------------------------------------------------------- Tiny-ImageNet
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
_TINY_STATS = ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821))


class TinyImageNetVal(torchvision.datasets.VisionDataset):
    """Tiny-ImageNet's validation images, labelled from ``val/val_annotations.txt``.

    The official ``val/images`` folder is flat; this reads the annotation file
    (``<file>\\t<wnid>\\t...``) instead of moving files into class folders, so
    the extracted archive is used as is (read-only storage works).
    """

    def __init__(self, root: str, class_to_idx: dict[str, int], transform: Callable | None = None):
        super().__init__(root, transform=transform)
        val = Path(root) / "val"
        self.samples = []
        with open(val / "val_annotations.txt") as f:
            for line in f:
                fields = line.split("\t")
                if len(fields) >= 2:
                    self.samples.append((str(val / "images" / fields[0]), class_to_idx[fields[1]]))
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = torchvision.datasets.folder.default_loader(path)
        return (self.transform(image) if self.transform else image), label


@register_dataset("tiny-imagenet", DatasetInfo("tiny-imagenet", 200, 3, 64, *_TINY_STATS))
def tiny_imagenet(
    data_dir: Path, download: bool = False, options: DataOptions | None = None
) -> tuple[Dataset, Dataset]:
    """Tiny-ImageNet-200 (64x64, 200 classes) from ``<data_dir>/tiny-imagenet-200``."""
    root = data_dir / "tiny-imagenet-200"
    if download and not root.is_dir():
        torchvision.datasets.utils.download_and_extract_archive(TINY_IMAGENET_URL, str(data_dir))
    needed = [root / "train", root / "val" / "val_annotations.txt", root / "val" / "images"]
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise DatasetNotFoundError(
            f"Tiny-ImageNet not found: expected {missing[0]}; download {TINY_IMAGENET_URL} and unzip it into "
            f"{data_dir}, or pass --download"
        )
    train_tf, test_tf = _image_transforms(64, *_TINY_STATS)
    train = torchvision.datasets.ImageFolder(str(root / "train"), transform=train_tf)
    return train, TinyImageNetVal(str(root), train.class_to_idx, transform=test_tf)


# ----------------------------------------------------------------------------- ImageNet
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@register_dataset("imagenet", DatasetInfo("imagenet", 1000, 3, 224, *_IMAGENET_STATS))
def imagenet(data_dir: Path, download: bool = False, options: DataOptions | None = None) -> tuple[Dataset, Dataset]:
    """ImageNet-1k in torchvision's ImageFolder layout: ``<data_dir>/imagenet/{train,val}/<wnid>/*.JPEG``
    (val sorted into class folders). Training: random-resized 224 crop + flip; test: resize 256, centre 224."""
    root = data_dir / "imagenet"
    missing = [p for p in (root / "train", root / "val") if not p.is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"ImageNet not found: expected {missing[0]} with one folder per class; get ILSVRC2012 from "
            "https://image-net.org (it cannot be downloaded automatically) and sort val into class folders"
        )
    normalize = [transforms.ToTensor(), transforms.Normalize(*_IMAGENET_STATS)]
    train_tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), *normalize])
    test_tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), *normalize])
    return (
        torchvision.datasets.ImageFolder(str(root / "train"), transform=train_tf),
        torchvision.datasets.ImageFolder(str(root / "val"), transform=test_tf),
    )
