"""Data sets: ``build_datasets(name, data_dir)`` and the registry of names."""

from .static import DatasetInfo, DatasetNotFoundError, build_datasets, dataset_info, list_datasets, register_dataset

__all__ = ["DatasetInfo", "DatasetNotFoundError", "build_datasets", "dataset_info", "list_datasets", "register_dataset"]
