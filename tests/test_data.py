"""Data loaders on tiny data sets written in the real on-disk formats."""

import numpy as np
import pytest
import torch

from bntt_snntorch.data import DatasetNotFoundError, build_datasets

from .fake_data import write_cifar10, write_cifar100, write_tiny_imagenet


def test_digits_fixed_stratified_split(tmp_path):
    train, test, info = build_datasets("digits", tmp_path)
    assert (len(train), len(test)) == (1437, 360)
    assert info.num_classes == 10 and info.in_channels == 1 and info.image_size == 8
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32
    test_counts = np.bincount(test.tensors[1].numpy(), minlength=10)
    assert test_counts.min() >= 35 and test_counts.max() <= 37  # stratified: ~36 per class
    again = build_datasets("digits", tmp_path)[1]
    assert torch.equal(again.tensors[0], test.tensors[0])
    assert abs(train.tensors[0].mean().item()) < 1e-4 and train.tensors[0].std().item() == pytest.approx(1, rel=1e-3)


def test_cifar10_real_pickles(tmp_path):
    write_cifar10(tmp_path)
    train, test, info = build_datasets("cifar10", tmp_path)
    assert (len(train), len(test), info.num_classes) == (30, 6, 10)
    x, y = test[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10
    raw = test.data[0].astype(np.float32) / 255  # HWC
    expected = (raw[..., 0] - 0.4914) / 0.2023
    assert torch.allclose(x[0], torch.from_numpy(expected), atol=1e-5)
    assert train.classes[3] == "class3"


def test_cifar100_real_pickles(tmp_path):
    write_cifar100(tmp_path)
    train, test, info = build_datasets("cifar100", tmp_path)
    assert (len(train), len(test), info.num_classes) == (12, 12, 100)
    assert train[0][0].shape == (3, 32, 32)


def test_tiny_imagenet_val_labels_from_annotations(tmp_path):
    annotations = write_tiny_imagenet(tmp_path)
    train, val, info = build_datasets("tiny-imagenet", tmp_path)
    assert len(train) == 6 and len(val) == 3 and info.image_size == 64
    for (name, wnid), (path, label) in zip(annotations, val.samples):
        assert path.endswith(name) and train.classes[label] == wnid
    assert val[0][0].shape == (3, 64, 64)


@pytest.mark.parametrize(
    "name,path",
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("tiny-imagenet", "tiny-imagenet-200")],
)
def test_missing_dataset_names_path_and_remedy(tmp_path, name, path):
    with pytest.raises(DatasetNotFoundError) as err:
        build_datasets(name, tmp_path)
    message = str(err.value)
    assert str(tmp_path / path) in message and "--download" in message and "\n" not in message


def test_incomplete_cifar_is_reported(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="incomplete"):
        build_datasets("cifar10", tmp_path)
