"""Data sets: ``build_datasets(name, data_dir)`` and the registry of names (:mod:`.registry`).

Static images (:mod:`.static`), DVS-CIFAR10 as cached frames (:mod:`.events`), N-MNIST, DVS Gesture
and N-Caltech101 from tonic's layouts (:mod:`.event_sets`) and simulated event digits (:mod:`.simulate`);
importing this package registers them.
"""

from .._compat import old_attribute
from . import event_sets, events, simulate, static  # noqa: F401  (register the data sets)
from .events import CIFAR10DVS
from .registry import (
    CorruptRecordingError,
    DataOptions,
    DatasetInfo,
    DatasetNotFoundError,
    build_datasets,
    dataset_info,
    list_datasets,
    register_dataset,
)
from .simulate import DigitsDVS, image_to_events

__all__ = [
    "CIFAR10DVS",
    "CorruptRecordingError",
    "DataOptions",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DigitsDVS",
    "build_datasets",
    "dataset_info",
    "image_to_events",
    "list_datasets",
    "register_dataset",
]


def __getattr__(name: str):
    return old_attribute(__name__, name, {"EventOptions": lambda: DataOptions})
