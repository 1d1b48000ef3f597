"""``TrainConfig``: everything one training run needs, filled from a recipe and validated.

``TrainConfig.from_recipe("digits", num_epochs=5)`` takes any field as an override; a field
left ``None`` takes the recipe's value, and a field the recipe does not set keeps the
dataclass default. Each value has that one source: the CLI's flags default to "unset" and
show the recipe's or the field's default in their help, so a command line and a Python call
with the same values give the same run.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from ..data import dataset_info, list_datasets
from ..memory import MEMORY_MODES
from ..models import is_ann, list_models, model_info
from ..neurons import list_neurons
from ..temporal_norm import list_norms, norm_info
from ..utils import cpu_bf16_support
from .online import TRAINING_MODES
from .recipes import ARCH_ALIASES, RECIPES, recipe_for

DATA_DIR_ENV, RUNS_DIR_ENV = "BNTT_DATA_DIR", "BNTT_RUNS_DIR"
EVAL_SEED_OFFSET = 1  # test-set Poisson draws use seed + 1, so they differ from the first training draws


class ConfigError(ValueError):
    """A setting (or combination) that cannot run; the message says what to change."""


def default_data_dir() -> str:
    """``$BNTT_DATA_DIR``, else ``datasets`` in the current folder (never the install location)."""
    return str(Path(os.environ.get(DATA_DIR_ENV) or "datasets").resolve())


def default_runs_dir() -> Path:
    """``$BNTT_RUNS_DIR``, else ``runs`` in the current folder."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; a GPU asked for but absent is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for a GPU but torch sees none; use --device cpu or auto")
    return device


@dataclass
class TrainConfig:
    """One training run. Units: ``lr`` per batch of ``batch_size`` images (the global batch
    under torchrun), ``lr_milestones`` as fractions of ``num_epochs``. Fields left ``None``
    here are the recipe's to fill (:mod:`.recipes`)."""

    # model and data
    arch: str | None = None
    dataset: str = "digits"
    num_steps: int | None = None  # time steps T (spiking models)
    leak_mem: float | None = None  # membrane leak beta in [0, 1] (spiking models)
    encode: str | None = None  # "p" Poisson rate, "d" direct, "none" (ANNs), "events" (event frames)
    norm: str = "bntt"  # temporal normalisation of the BNTT VGGs (bntt_snntorch.list_norms())
    neuron: str = "bntt_leaky"  # neuron of the spiking models (bntt_snntorch.list_neurons()); the seed's by default
    training: str = "bptt"  # "bptt", or online (memory independent of T): "sltt", "ottt" (training/online.py)
    sltt_k: int | None = None  # SLTT-K: backpropagate K random steps of each batch (training="sltt")
    # optimisation
    lr: float | None = None
    batch_size: int | None = None
    num_epochs: int | None = None
    optimizer: str | None = None  # "sgd" or "adam"
    momentum: float | None = None  # SGD only
    weight_decay: float = 0.0
    lr_milestones: tuple = ()  # lr *= lr_gamma at these fractions of num_epochs
    lr_gamma: float = 0.1  # lr factor at each milestone / step
    lr_step: int | None = None  # decay every N epochs instead of at lr_milestones
    lr_scheduler: str = "step"  # "step" (lr_milestones / lr_step) or "cosine" (lr to 0 over num_epochs)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    adam_betas: tuple = (0.9, 0.999)
    weight_decay_until: int | None = None  # weight decay 0 after this epoch
    # event data
    dvs_size: int | None = None  # frame size (None: the sensor's)
    augment: tuple = ()  # training augmentation: event frames "flip" and / or "translate"; digits "translate"
    skip_corrupt: bool = False  # skip unreadable recordings
    # run
    recipe: str | None = None
    data_dir: str | None = None  # default: $BNTT_DATA_DIR, else ./datasets
    download: bool = False
    device: str = "auto"
    seed: int = 0
    output_dir: str | None = None  # default runs/<dataset>-<arch>-<time>
    num_workers: int = 0
    max_batches: int | None = None  # batches per epoch (short runs)
    progress: bool = True
    resume: str | None = None  # checkpoint path, or "auto": <output_dir>/last.pt if it exists
    save_every: int | None = None  # also checkpoint every N training steps
    tensorboard: bool = False
    # speed
    amp: str | None = None  # "bf16" or "fp16"
    compile: bool = False
    channels_last: bool = False
    memory: str = "default"  # "default" or "low": what the fused blocks keep for backward (bntt_snntorch.set_memory)

    @classmethod
    def from_recipe(cls, recipe: str | None = None, **overrides) -> TrainConfig:
        """The recipe ``recipe`` (default: the data set's) with ``overrides`` applied, validated.

        Any field may be overridden; ``None`` keeps the recipe's value. Raises
        :class:`ConfigError` (one line saying what to change) before any data is touched.
        """
        overrides = _renamed(overrides)
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {sorted(unknown)}; see bntt_snntorch.TrainConfig")
        values = {k: v for k, v in overrides.items() if v is not None}
        dataset = values.get("dataset", cls.dataset)
        try:
            base = recipe_for(dataset, recipe)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        merged = {**base, **values, "recipe": recipe}
        aliases = ARCH_ALIASES.get(recipe, {})
        merged["arch"] = aliases.get(merged.get("arch"), merged.get("arch"))
        return cls(**merged)._validated(explicit_encode=values.get("encode"))

    @classmethod
    def from_dict(cls, saved: dict) -> TrainConfig:
        """A config saved with a run (``config.json`` / a checkpoint); fields it lacks keep their defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in _renamed(saved).items() if k in known}
        return cls(**values)

    @property
    def dvs_augment(self) -> tuple:
        """The earlier name of :attr:`augment` (runs saved before the rename say ``dvs_augment``)."""
        return self.augment

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def eval_seed(self) -> int:
        """Seed of the test-set Poisson draws (the run's evaluation and every later analysis)."""
        return self.seed + EVAL_SEED_OFFSET

    def _check_training(self, ann: bool) -> None:
        if self.training not in TRAINING_MODES:
            raise ConfigError(f"unknown --training {self.training!r}; choose one of {', '.join(TRAINING_MODES)}")
        if self.training == "bptt":
            if self.sltt_k is not None:
                raise ConfigError("--sltt-k is SLTT-K: use it with --training sltt")
            return
        if ann:
            raise ConfigError(
                f"--training {self.training} trains spiking nets step by step; --arch {self.arch} is an ANN"
            )
        if not norm_info(self.norm).per_step_statistics:
            raise ConfigError(
                f"--training {self.training} runs one step at a time, but --norm {self.norm} normalises with the "
                f"statistics of all steps; use a norm with per-step statistics: {', '.join(_per_step_norms())}"
            )
        if self.sltt_k is not None and (self.training != "sltt" or not 1 <= self.sltt_k <= self.num_steps):
            raise ConfigError(f"--sltt-k must be in [1, --num-steps={self.num_steps}] with --training sltt")

    def _validated(self, explicit_encode: str | None) -> TrainConfig:
        if self.dataset not in list_datasets():
            raise ConfigError(f"unknown dataset {self.dataset!r}; available: {', '.join(list_datasets())}")
        if dataset_info(self.dataset).events:
            if explicit_encode not in (None, "events"):
                raise ConfigError(f"--dataset {self.dataset} gives event frames: leave out --encode {explicit_encode}")
            self.encode = "events"
        elif self.encode == "events":
            raise ConfigError(
                f"--recipe {self.recipe} is for event data: use an event --dataset ({', '.join(_event_sets())})"
            )
        if self.arch not in list_models():
            if self.arch in ARCH_ALIASES["rate-vs-direct"]:
                raise ConfigError(
                    f"--arch {self.arch} is a net of the rate-vs-direct work: add --recipe rate-vs-direct"
                )
            raise ConfigError(f"unknown --arch {self.arch!r}; available: {', '.join(list_models())}")
        if self.norm not in list_norms():
            raise ConfigError(f"unknown --norm {self.norm!r}; choose one of {', '.join(list_norms())}")
        if self.norm != "bntt" and not model_info(self.arch).takes_norm:
            raise ConfigError(
                f"--norm {self.norm} applies to the BNTT VGGs (vgg9, vgg11, bntt_digits), not --arch {self.arch}"
            )
        if self.neuron not in list_neurons():
            raise ConfigError(f"unknown --neuron {self.neuron!r}; choose one of {', '.join(list_neurons())}")
        if self.neuron != "bntt_leaky" and not model_info(self.arch).takes_neuron:
            raise ConfigError(f"--neuron {self.neuron} applies to spiking models, not the ANN --arch {self.arch}")
        ann = is_ann(self.arch)
        if ann != (self.encode == "none"):
            raise ConfigError(
                f"--arch {self.arch} is an ANN (to convert later): train it with --encode none or a bsnn-* --recipe"
                if ann
                else f"--encode none gives no time axis; --arch {self.arch} is a spiking net: use --encode p or d"
            )
        if not ann:
            for name in ("num_steps", "leak_mem"):
                if getattr(self, name) is None:
                    raise ConfigError(f"--arch {self.arch} is a spiking net: set --{name.replace('_', '-')}")
            if not 0.0 <= self.leak_mem <= 1.0:
                raise ConfigError(f"--leak-mem must be in [0, 1], got {self.leak_mem}")
        self._check_training(ann)
        if self.optimizer == "sgd" and self.momentum is None:
            raise ConfigError("--optimizer sgd needs a momentum (the recipes set 0.9)")
        if self.optimizer == "sgd" and not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0 (it seeds numpy's generators too), got {self.seed}")
        if self.num_workers < 0:
            raise ConfigError(f"--num-workers must be >= 0, got {self.num_workers}")
        if self.memory not in MEMORY_MODES:
            raise ConfigError(f"--memory must be one of {', '.join(MEMORY_MODES)}, got {self.memory!r}")
        self.device = str(resolve_device(self.device))
        if self.amp == "fp16" and not self.device.startswith("cuda"):
            raise ConfigError("--amp fp16 needs a CUDA device (it uses a GradScaler); on CPU use --amp bf16")
        if self.amp == "bf16" and self.device == "cpu":
            _warn_if_bf16_is_emulated()
        if self.data_dir is None:
            self.data_dir = default_data_dir()
        if self.output_dir is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.output_dir = str(default_runs_dir() / f"{self.dataset}-{self.arch}-{stamp}")
        self.lr_milestones = tuple(self.lr_milestones)
        self.adam_betas = tuple(self.adam_betas)
        if isinstance(self.augment, str):  # the flag's spellings
            self.augment = {"none": (), "both": ("flip", "translate")}.get(self.augment, (self.augment,))
        self.augment = tuple(self.augment)
        if self.dataset == "digits" and "flip" in self.augment:
            raise ConfigError("--augment flip would mirror the digits into other shapes; use --augment translate")
        if self.lr_scheduler not in ("step", "cosine"):
            raise ConfigError(f"--lr-scheduler must be step or cosine, got {self.lr_scheduler!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        return self


#: Field names of earlier releases -> today's (``from_recipe`` and ``from_dict`` accept both).
RENAMED_FIELDS = {"dvs_augment": "augment"}


def _renamed(values: dict) -> dict:
    return {RENAMED_FIELDS.get(key, key): value for key, value in values.items()}


#: Where the slowdown of emulated bf16 was measured (the warning names it).
AMP_MEASUREMENT = "benchmarks/results/amp-cpu.md"


def _warn_if_bf16_is_emulated() -> None:
    """``--amp bf16`` on a CPU without bf16 instructions: warn once, with the capability and the measured cost."""
    native, capability = cpu_bf16_support()
    if native is False:
        warnings.warn(
            f"--amp bf16 on a CPU without bf16 instructions ({capability}, no avx512_bf16 / amx_bf16): autocast "
            "emulates bfloat16 and is much slower than float32 here (the VGG9 train step ran 14x slower on an AVX2 "
            f"CPU; {AMP_MEASUREMENT}); leave out --amp on this machine",
            stacklevel=4,
        )


def _event_sets() -> list[str]:
    return [name for name in list_datasets() if dataset_info(name).events]


def _per_step_norms() -> list[str]:
    return [n for n in list_norms() if norm_info(n).per_step_statistics]


def _check_recipe(name: str, values: dict) -> None:
    """A recipe holds TrainConfig fields only, each of the field's type (checked at import)."""
    kinds = {"int": int, "float": (int, float), "str": str, "bool": bool, "tuple": tuple}
    types = {f.name: kinds[str(f.type).split(" | ")[0]] for f in fields(TrainConfig)}
    for key, value in values.items():
        if key not in types:
            raise TypeError(f"recipe {name!r}: {key!r} is not a TrainConfig field")
        if not isinstance(value, types[key]):
            raise TypeError(f"recipe {name!r}: {key}={value!r} is not of the field's type")
    if values.get("optimizer") == "adam" and "momentum" in values:
        raise TypeError(f"recipe {name!r}: momentum means nothing under Adam")
    arch = ARCH_ALIASES.get(name, {}).get(values["arch"], values["arch"])
    if is_ann(arch) and {"num_steps", "leak_mem"} & set(values):
        raise TypeError(f"recipe {name!r}: an ANN has no time steps or leak")


for _name, _values in RECIPES.items():
    _check_recipe(_name, _values)
