"""A training run's pieces rebuilt from its config: model, data sets, checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import DataOptions, build_datasets, dataset_info
from ..layers import mark_spike_inputs
from ..memory import set_memory
from ..models import SpikingNet, create_model, is_ann, model_info
from .checkpoint import UNREADABLE, load_checkpoint
from .config import TrainConfig


class CheckpointError(ValueError):
    """A checkpoint is missing or is not a bntt_snntorch training checkpoint."""


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a file, else ``best.pt`` (or ``last.pt``) in the run folder ``path``."""
    path = Path(path)
    if path.is_file():
        return path
    for name in ("best.pt", "last.pt"):
        if (path / name).is_file():
            return path / name
    raise CheckpointError(f"no checkpoint at {path}: expected a .pt file or a run folder with best.pt or last.pt")


def build_model(cfg: TrainConfig):
    """The model ``cfg`` describes (arch, dataset, num_steps, leak_mem, encode, norm, neuron); each
    factory gets the arguments its registry entry declares (an ANN takes no num_steps or neuron).
    With Poisson input the first synapse keeps its spikes as int8 codes too
    (:func:`~bntt_snntorch.layers.mark_spike_inputs`). What its blocks keep for backward: ``cfg.memory``
    (:func:`~bntt_snntorch.set_memory`)."""
    info = dataset_info(cfg.dataset, cfg.dvs_size)
    arguments = dict(num_classes=info.num_classes, in_channels=info.in_channels, image_size=info.image_size)
    if not is_ann(cfg.arch):
        arguments.update(num_steps=cfg.num_steps, leak_mem=cfg.leak_mem)
    if model_info(cfg.arch).takes_encoding:
        arguments["encode"] = cfg.encode
    if model_info(cfg.arch).takes_norm:
        arguments["norm"] = cfg.norm
    if model_info(cfg.arch).takes_neuron:
        arguments["neuron"] = cfg.neuron
    model = create_model(cfg.arch, **arguments)
    if isinstance(model, SpikingNet) and cfg.encode == "p":  # Poisson spikes: the first synapse keeps int8 codes
        mark_spike_inputs(model.features, input_quantum=1.0)
    return set_memory(model, cfg.memory)


def run_datasets(cfg: TrainConfig, data_dir: str | Path | None = None, download: bool = False, progress: bool = True):
    """``(train, test, info)`` of a run; event data sets get its frame settings (T, ``dvs_size``,
    augmentation, workers), and a training augmentation with draws of its own the run's seed."""
    options = DataOptions(
        num_steps=cfg.num_steps,
        size=cfg.dvs_size,
        augment=tuple(cfg.augment or ()),
        num_workers=cfg.num_workers or 0,
        skip_corrupt=bool(cfg.skip_corrupt),
        progress=progress,
        seed=cfg.seed,
    )
    return build_datasets(cfg.dataset, data_dir or cfg.data_dir, download, options)


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[object, Path]:
    """``(loaded object, checkpoint path)`` of a run folder or checkpoint file."""
    ckpt_path = find_checkpoint(path)
    try:
        return load_checkpoint(ckpt_path, map_location=device), ckpt_path
    except UNREADABLE as err:  # truncated or not a torch file
        cause = " ".join(str(err).split())
        raise CheckpointError(f"cannot read {ckpt_path}: {cause}") from None


def load_weights(model, state_dict: dict, ckpt_path: Path, what: str) -> None:
    """``model.load_state_dict(state_dict)``; a mismatch is a one-line :class:`CheckpointError`
    saying ``ckpt_path does not fit <what>``."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{ckpt_path} does not fit {what}: {first}") from None


def model_from_checkpoint(ckpt, ckpt_path: Path, device: torch.device | str = "cpu"):
    """``(model in eval mode, TrainConfig)`` of a loaded training checkpoint."""
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{ckpt_path} is not a bntt_snntorch training checkpoint (no 'config' / 'model' entries)")
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build_model(cfg)
    load_weights(model, ckpt["model"], ckpt_path, f"a {cfg.arch!r} model")
    return model.to(device).eval(), cfg


def load_run(path: str | Path, device: torch.device | str = "cpu"):
    """``(model, TrainConfig, checkpoint path)`` of a run folder or checkpoint file."""
    ckpt, ckpt_path = read_checkpoint(path, device)
    model, cfg = model_from_checkpoint(ckpt, ckpt_path, device)
    return model, cfg, ckpt_path
