"""Named hyper-parameter sets of the source works; they fill the CLI flags left unset."""

from __future__ import annotations

RECIPES: dict[str, dict] = {
    # BNTT seed (Kim & Panda 2020), original train.py defaults. The seed's commands
    # override them: VGG9/CIFAR-10 T=25 leak 0.95 batch 256 lr 0.3; VGG11/CIFAR-100
    # T=30 leak 0.99 batch 128 lr 0.3. SGD momentum 0.9, weight decay 1e-4,
    # lr / 10 at 50%, 70%, 90% of the epochs; Poisson input.
    "bntt": dict(
        arch="vgg9", num_steps=25, lr=0.1, batch_size=128, leak_mem=0.99, num_epochs=120, encode="p",
        optimizer="sgd", momentum=0.9, weight_decay=1e-4, lr_milestones=(0.5, 0.7, 0.9), num_workers=4,
    ),
    # Offline default: the BNTT recipe scaled to sklearn's 8x8 digits
    # (about a minute on 2 CPU cores, ~98% test accuracy).
    "digits": dict(
        arch="bntt_digits", num_steps=10, lr=0.1, batch_size=64, leak_mem=0.95, num_epochs=30, encode="p",
        optimizer="sgd", momentum=0.9, weight_decay=1e-4, lr_milestones=(0.5, 0.7, 0.9), num_workers=0,
    ),
    # Rate vs direct coding (Kim et al. 2022): Adam 1e-3, lr / 10 at 50/70/90 % of 100 epochs,
    # batch 128, leak 0.5, T in {5, 10, 15, 20, 30}. --arch mlp|vgg5|vgg9 name that work's nets.
    "rate-vs-direct": dict(
        arch="vgg5", num_steps=10, lr=1e-3, batch_size=128, leak_mem=0.5, num_epochs=100, encode="p",
        optimizer="adam", momentum=0.9, weight_decay=0.0, lr_milestones=(0.5, 0.7, 0.9), num_workers=4,
        arch_names={"mlp": "rvd_mlp", "vgg5": "rvd_vgg5", "vgg9": "rvd_vgg9"},
    ),
}

DEFAULT_RECIPE_FOR_DATASET = {"digits": "digits"}


def recipe_for(dataset: str, name: str | None = None) -> dict:
    """The recipe called ``name``, or the default one of ``dataset``."""
    name = name or DEFAULT_RECIPE_FOR_DATASET.get(dataset, "bntt")
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]
