# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tutorial 5: ANN -> SNN conversion, full precision and binary
#
# Instead of training a spiking network with surrogate gradients, train an
# ordinary ReLU network and **convert** it: every ReLU becomes an
# integrate-and-fire neuron (an `snn.Leaky` with beta = 1, threshold 1, reset by
# subtraction) whose firing rate approximates the ReLU's output. Lu & Sengupta
# (2020) showed this also works for **binary** networks (XNOR-style weights
# `sign(W) * alpha`), whose weights are then a single magnitude per channel.
#
# The key step is *threshold balancing*: a neuron cannot fire more than once per
# step, so each layer's activations are scaled by lambda_l, the 99.9th percentile
# of its ReLU outputs on training images: `W_l <- W_l * lambda_{l-1} / lambda_l`.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader

from bntt_snntorch import TrainConfig, train
from bntt_snntorch.conversion import accuracy_over_time, activation_scales, convert
from bntt_snntorch.training import load_run
from bntt_snntorch.training.runs import run_datasets

QUICK = os.environ.get("BNTT_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("BNTT_TUTORIAL_OUT", "tutorial_output/05"))
OUT.mkdir(parents=True, exist_ok=True)
TIME = 30 if QUICK else 100

# %% [markdown]
# ## 1. Train the two ANNs
# `vggab_digits` is the paper's VGG design (average pooling before the ReLU, no
# biases, dropout) scaled to 8x8 digits; `vggab_digits_binary` binarizes every
# layer but the first and the last.

# %%
anns = {}
for precision in ("fp", "binary"):
    run = OUT / precision
    if not (run / "best.pt").exists():
        train(
            TrainConfig.from_recipe(
                f"bsnn-digits-{precision}", output_dir=str(run), progress=False, num_epochs=4 if QUICK else None
            )
        )
    anns[precision], cfg = load_run(run)[:2]

# %% [markdown]
# ## 2. Balance and convert
# `activation_scales` runs training images through the ANN and returns one
# lambda per ReLU; `convert` builds the spiking twin.

# %%
train_set, test_set, _ = run_datasets(cfg, progress=False)
norm_images = torch.stack([train_set[i][0] for i in range(len(train_set))])
images, labels = next(iter(DataLoader(test_set, batch_size=len(test_set))))
curves, ann_accuracy = {}, {}
for precision, ann in anns.items():
    scales = activation_scales(ann, [norm_images], num_images=len(norm_images), percentile=99.9)
    snn_net = convert(ann, scales, one_step=True)
    print(precision, "lambdas:", [round(s, 2) for s in scales])
    with torch.no_grad():
        ann_accuracy[precision] = (ann(images).argmax(1) == labels).float().mean().item()
    curves[precision] = (accuracy_over_time(snn_net, images, labels, TIME).double() / len(labels)).tolist()
    print(
        f"{precision}: ANN {100 * ann_accuracy[precision]:.1f} %, SNN after {TIME} steps "
        f"{100 * curves[precision][-1]:.1f} %"
    )

# %% [markdown]
# The converted network is an ordinary module of `snn.Leaky` neurons; it runs
# one step at a time too, snnTorch style:

# %%
state, total = None, 0
for _ in range(5):
    out, state = snn_net.step(images[:4], state)
    total = total + out
print("prediction after 5 steps, step by step:", total.argmax(1).tolist())
assert torch.equal(total, snn_net(images[:4], 5).sum(0))

# %% [markdown]
# ## 3. Accuracy vs time steps

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for (precision, curve), color in zip(curves.items(), ("C0", "C1")):
    ax.plot(range(1, TIME + 1), [100 * a for a in curve], color=color, label=f"SNN {precision}")
    ax.axhline(100 * ann_accuracy[precision], color=color, ls="--", lw=1, label=f"ANN {precision}")
ax.set(xlabel="time steps", ylabel="test accuracy (%)", ylim=(0, 100), title="Converted SNNs on digits")
ax.legend(loc="lower right")
fig.tight_layout()
fig.savefig(OUT / "accuracy_vs_time.png", dpi=110)

# %% [markdown]
# Full-length run (`python -m bntt_snntorch compare-conversion`, committed in
# `results/bsnn-digits`): both SNNs come within one point of their ANN in 20-40
# steps. For CIFAR-100 / ImageNet use `python train.py --recipe bsnn-cifar100-fp`
# and `python -m bntt_snntorch convert --job-dir ... --model ...` (see the README).
