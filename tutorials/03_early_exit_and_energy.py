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
# # Tutorial 3: Early exit and energy
#
# A spiking network pays for every time step it runs. BNTT offers a way to stop
# early: its per-step gammas say how much each step contributes, so at
# inference the network can exit at the first step where the gammas, averaged
# over layers, fall below a threshold (0.1 in the paper). And because spikes are
# binary, a spiking layer only *accumulates* weights for inputs that fired,
# which we turn into an energy estimate.
#
# We train the offline digits network, then
# 1. read the gamma curves and the exit step they choose,
# 2. measure accuracy when stopping after 1, 2, ..., T steps (one pass),
# 3. count spikes and operations and compare the SNN's energy with the same
#    network run as an ANN.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader

from bntt_snntorch import TrainConfig, encoding, plots, train
from bntt_snntorch.analysis import accuracy_per_step, count_operations, energy_table, exit_step, mean_gamma_curve
from bntt_snntorch.training import load_run
from bntt_snntorch.training.runs import run_datasets

QUICK = os.environ.get("BNTT_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("BNTT_TUTORIAL_OUT", "tutorial_output/03"))
OUT.mkdir(parents=True, exist_ok=True)


def show(png: Path) -> None:
    """Show a figure the analysis wrote (inline in a notebook)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.imshow(plt.imread(png))
    ax.set_axis_off()


# %% [markdown]
# ## Train (or reuse) a run
# `train.py` with no flags trains `bntt_digits` (T=10) on scikit-learn's digits.

# %%
run = OUT / "digits-bntt"
if not (run / "best.pt").exists():
    train(TrainConfig.from_recipe("digits", output_dir=str(run), progress=False, num_epochs=3 if QUICK else None))
model, cfg, _ = load_run(run)
T = cfg.num_steps

# %% [markdown]
# ## 1. Gammas and the exit step

# %%
curve = mean_gamma_curve(model)
threshold = 0.1
exit_at = exit_step(curve, threshold)
print("layer-averaged gamma per step:", [round(float(g), 3) for g in curve])
print(f"exit at step {exit_at} of {T} (threshold {threshold})")

# %% [markdown]
# ## 2. Accuracy at every exit step
# BNTT at inference may run fewer steps than it was trained with; `forward_steps`
# returns the logits after each step from one multi-step pass.

# %%
_, test_set, _ = run_datasets(cfg, progress=False)
loader = DataLoader(test_set, batch_size=256)
generator = torch.Generator().manual_seed(1)
accuracy = accuracy_per_step(model, loader, lambda x: encoding.encode(x, T, cfg.encode, generator), "cpu")
for t in (1, T // 2, T):
    print(f"after {t:2d} steps: {100 * accuracy[t - 1]:.1f} %")
plots.plot_accuracy_vs_steps(accuracy.tolist(), exit_at if exit_at < T else None, OUT / "accuracy_vs_steps.png")
show(OUT / "accuracy_vs_steps.png")

# %% [markdown]
# ## 3. Spikes, operations, energy
# Per synapse: the ANN does MACs once per image; the SNN does accumulates only
# for non-zero inputs, at every step (45 nm figures: 4.6 pJ per MAC, 0.9 pJ per
# accumulate).

# %%
images, _ = next(iter(loader))
ops = count_operations(model, encoding.encode(images, T, cfg.encode, generator))
rows = energy_table(ops)
for r in rows:
    rate = "" if r.get("output_rate") is None else f"spike rate {100 * r['output_rate']:5.1f} %"
    print(f"{r['name']:>12s}  ANN {r['ann_pj'] / 1e6:7.3f} uJ   SNN {r['snn_pj'] / 1e6:7.3f} uJ   {rate}")
total = next(r for r in rows if r["name"] == "total")
assert total["snn_pj"] > 0 and total["ann_pj"] > 0
plots.plot_energy(rows, OUT / "energy.png")
show(OUT / "energy.png")
