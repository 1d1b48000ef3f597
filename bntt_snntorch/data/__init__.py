"""Data sets: ``build_datasets(name, data_dir)`` and the registry of names.

Static images (:mod:`.static`), DVS-CIFAR10 as cached frames (:mod:`.events`)
and simulated event digits (:mod:`.simulate`).
"""

from .events import CIFAR10DVS, CorruptRecordingError, EventOptions, cifar10_dvs
from .simulate import DigitsDVS, digits_dvs, image_to_events
from .static import DatasetInfo, DatasetNotFoundError, build_datasets, dataset_info, list_datasets, register_dataset

register_dataset("cifar10-dvs", cifar10_dvs, DatasetInfo("cifar10-dvs", 10, 2, 128, events=True))
register_dataset("digits-dvs", digits_dvs, DatasetInfo("digits-dvs", 10, 2, 16, events=True))

__all__ = [
    "CIFAR10DVS", "CorruptRecordingError", "DatasetInfo", "DatasetNotFoundError", "DigitsDVS", "EventOptions",
    "build_datasets", "dataset_info", "image_to_events", "list_datasets", "register_dataset",
]
