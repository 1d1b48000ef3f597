"""The training tier: configs and recipes, the epoch loop, checkpoints, distributed runs.

``train(TrainConfig.from_recipe("digits", num_epochs=5)) -> TrainResult``. Depends on the
library (models, data, analysis); the commands depend on it, never the other way round.
"""

from .config import ConfigError, TrainConfig, resolve_device
from .recipes import RECIPES
from .runs import CheckpointError, load_run
from .trainer import TrainResult, train, train_or_resume

__all__ = [
    "RECIPES",
    "CheckpointError",
    "ConfigError",
    "TrainConfig",
    "TrainResult",
    "load_run",
    "resolve_device",
    "train",
    "train_or_resume",
]
