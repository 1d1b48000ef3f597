# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tutorial 7: Online training, memory that does not grow with T
#
# Backpropagation through time (BPTT) keeps every step's activations for one backward at
# the end, so training memory grows with the number of time steps T. The online rules run
# the network one step at a time and backpropagate each step's loss before the next step:
#
# | `training=` | gradient | memory |
# |---|---|---|
# | `"bptt"` | every path, through the membranes across steps | grows with T |
# | `"sltt"` | step t's loss through step t only (the membrane from t-1 is detached) | one step |
# | `"ottt"` | as SLTT, with a presynaptic trace in place of the synapse's input | one step |
#
# BNTT suits them: step t's statistics need only step t's batch. The equations are on the
# docs page "Online training".
#
# 1. Measure the bytes held for backward during one training step, against T.
# 2. See how close each rule's weight gradient is to BPTT's.
# 3. Train with `training="ottt"` and read the committed study.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import bntt_snntorch as bs
from bntt_snntorch.profiling import LiveSavedTensors
from bntt_snntorch.training.online import online_backward

QUICK = os.environ.get("BNTT_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("BNTT_TUTORIAL_OUT", "tutorial_output/07"))
OUT.mkdir(parents=True, exist_ok=True)
RESULTS = Path(os.environ.get("BNTT_RESULTS_DIR", "results"))  # the committed studies (run from the repository root)
RULES = ("bptt", "sltt", "ottt")


# %% [markdown]
# ## 1. Memory of a training step against T
# `LiveSavedTensors` follows the bytes autograd holds for backward through a whole step
# (forward and backward) and keeps the peak. `online_backward` is the online step the
# training loop runs: at each step the forward, the loss `CE(readout_t, y) / T` and its
# backward.


# %%
def one_step(rule: str, model, x_seq, labels):
    """Forward and backward of one batch, as the training loop runs it for ``rule``."""
    if rule == "bptt":
        F.cross_entropy(model(x_seq), labels).backward()
    else:
        online_backward(model, x_seq, labels, rule)


def peak_saved_kib(rule: str, num_steps: int) -> float:
    torch.manual_seed(0)
    model = bs.create_model("bntt_digits", num_steps=num_steps).train()
    x_seq = (torch.rand(num_steps, 32, 1, 8, 8) < 0.3).float()  # (T, B, C, H, W) spikes
    labels = torch.randint(0, 10, (32,))
    with LiveSavedTensors() as live:
        one_step(rule, model, x_seq, labels)
    return live.peak / 2**10


steps = (8, 16, 32) if QUICK else (8, 16, 32, 64)  # from T=8: every rule carries a membrane between its chunks
peaks = {rule: [peak_saved_kib(rule, T) for T in steps] for rule in RULES}
for rule, kib in peaks.items():
    print(f"{rule:4s} peak saved for backward: " + ", ".join(f"T={T}: {k:7.0f} KiB" for T, k in zip(steps, kib)))
    print(f"     grows {kib[-1] / kib[0]:.2f}x from T={steps[0]} to T={steps[-1]}")

fig, ax = plt.subplots(figsize=(6, 3.5))
for rule, kib in peaks.items():
    ax.plot(steps, [k / 1024 for k in kib], marker="o", label=rule.upper())
ax.set(xlabel="time steps T", ylabel="peak saved for backward (MiB)", xscale="log", title="digits net, batch 32")
ax.set_xticks(steps, [str(T) for T in steps])
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "memory_vs_T.png", dpi=120)

# %% [markdown]
# BPTT's bytes grow with T; the online rules' do not: their peak is the same at every T, the
# input included (each chunk of steps runs from a copy of its own steps, so nothing saved keeps
# the whole `(T, 32, 1, 8, 8)` input). The sweep starts at T=8, where every rule carries its
# membrane from one chunk of steps to the next (a first chunk starts from zeros and keeps none).
#
# ## 2. How far from BPTT is each rule's gradient?
# The online rules drop the gradient's path through the membrane across steps (and take
# the mean of per-step losses, where BPTT takes one loss on the mean readout). On one
# batch of a freshly built network, the cosine similarity of each layer's weight
# gradient with BPTT's:


# %%
def weight_gradients(rule: str) -> dict:
    torch.manual_seed(1)
    model = bs.create_model("bntt_digits", num_steps=10).train()
    torch.manual_seed(2)
    x_seq = (torch.rand(10, 64, 1, 8, 8) < 0.3).float()
    labels = torch.randint(0, 10, (64,))
    one_step(rule, model, x_seq, labels)
    return {name: p.grad.flatten() for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1}


reference = weight_gradients("bptt")
for rule in ("sltt", "ottt"):
    grads = weight_gradients(rule)
    cosines = ", ".join(f"{name}: {F.cosine_similarity(grads[name], g, dim=0):.2f}" for name, g in reference.items())
    print(f"{rule}: cosine with BPTT per layer: {cosines}")

# %% [markdown]
# ## 3. Train online
# `TrainConfig.from_recipe("digits", training="ottt")`, or on the command line
# `python train.py --training ottt` (`--training sltt --sltt-k 2` backpropagates 2 random
# steps of T per batch). The rule is recorded in the checkpoint, and `--resume` refuses a
# checkpoint trained with another rule.

# %%
cfg = bs.TrainConfig.from_recipe(
    "digits", training="ottt", output_dir=str(OUT / "ottt"), progress=False,
    **(dict(num_epochs=1, max_batches=5) if QUICK else dict(num_epochs=10)),
)  # fmt: skip
result = bs.train(cfg)
print(f"OTTT, {len(result.rows)} epochs: test accuracy {100 * result.rows[-1]['test_acc']:.1f} %")

# %% [markdown]
# ## 4. The committed study
# `compare_training(TrainingStudyOptions(dataset="digits", seeds=3))` (the command:
# `python -m bntt_snntorch compare-training --dataset digits --seeds 3`) trains BPTT, SLTT,
# SLTT-K and OTTT with the same recipe and seeds. The tables of the committed runs:

# %%
for dataset in ("digits", "digits-dvs"):
    table = RESULTS / f"online-training-{dataset}" / "comparison.md"
    print(table.read_text() if table.exists() else f"{table} is not here (run the command it names to make it)")

# %%
figures = [RESULTS / f"online-training-{d}" / "accuracy.png" for d in ("digits", "digits-dvs")]
figures += [RESULTS.parent / "benchmarks" / "results" / "online-memory.png"]
figures = [f for f in figures if f.exists()]
if figures:
    fig, axes = plt.subplots(len(figures), 1, figsize=(8, 4.5 * len(figures)), squeeze=False)
    for ax, path in zip(axes.flat, figures):
        ax.imshow(plt.imread(path))
        ax.set_axis_off()
    fig.tight_layout()
