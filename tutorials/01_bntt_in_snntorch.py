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
# # Tutorial 1: Batch Normalization Through Time in an snnTorch network
#
# snnTorch's tutorials build spiking networks as a loop over time steps: at every
# step the input current goes through a layer, then through `snn.Leaky`. Batch
# Normalization Through Time (BNTT, Kim & Panda 2020) adds one BatchNorm per
# **time step** — its own running statistics and its own gamma at every step —
# so the network can learn how much each step matters.
#
# In this tutorial we
# 1. write the usual snnTorch loop with `snn.BatchNormTT2d`,
# 2. swap in `bntt_snntorch.BatchNormTT2d` (same state dict, same loop),
# 3. run the **same weights** on the fast multi-step path, where each layer
#    processes all T steps at once,
# 4. train it on handwritten digits and plot the learned per-step gammas.
#
# Runs offline on a CPU in about a minute (`BNTT_TUTORIAL_QUICK=1`: seconds).

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

import bntt_snntorch as bs
from bntt_snntorch.data import build_datasets
from bntt_snntorch.encoding import poisson

QUICK = os.environ.get("BNTT_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("BNTT_TUTORIAL_OUT", "tutorial_output/01"))
OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
T, BETA = 8, 0.9

# %% [markdown]
# ## 1. The snnTorch way
# A conv layer, a BNTT layer with one BatchNorm per step, a leaky neuron, and a
# linear readout. `snn.BatchNormTT2d(channels, T)` is a list of T BatchNorms;
# step `t` uses `bn[t]`.


# %%
class SnnTorchNet(nn.Module):
    def __init__(self, bntt: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn = bntt
        self.lif = snn.Leaky(beta=BETA)
        self.fc = nn.Linear(16 * 8 * 8, 10, bias=False)

    def forward(self, x_seq):  # (T, B, 1, 8, 8) -> summed logits (B, 10)
        mem = self.lif.init_leaky()
        out = 0
        for t in range(x_seq.shape[0]):
            spk, mem = self.lif(self.bn[t](self.conv(x_seq[t])), mem)
            out = out + self.fc(spk.flatten(1))
        return out


reference = SnnTorchNet(snn.BatchNormTT2d(16, T))
x_seq = poisson(torch.randn(32, 1, 8, 8), T)  # signed Poisson spikes (T, B, C, H, W)

# %% [markdown]
# ## 2. Drop in ours
# `bntt_snntorch.BatchNormTT2d` is indexed the same way and loads snnTorch's
# state dict, with snnTorch's arguments and defaults, so the loop does not change.

# %%
ours = SnnTorchNet(bs.BatchNormTT2d(16, T))
ours.load_state_dict(reference.state_dict())
reference.train(), ours.train()
difference = (reference(x_seq) - ours(x_seq)).abs().max().item()
print(f"drop-in: largest difference to snnTorch {difference:.2e}")
assert difference < 1e-5

# %% [markdown]
# ## 3. The same weights, multi-step
# Now every layer takes the whole `(T, B, ...)` sequence: the convolution runs on
# a `(T*B)` batch, BNTT normalises all steps in **one** batch-norm call, and
# `bs.Leaky(..., step_mode="m")` (an `snn.Leaky`) scans over time. Each layer says which
# it takes with its `step_mode` ("s": one step a call, "m": a sequence); the state dict is the same.


# %%
class MultiStepNet(SnnTorchNet):
    def __init__(self):
        super().__init__(bs.BatchNormTT2d(16, T, step_mode="m"))
        self.lif = bs.Leaky(beta=BETA, step_mode="m")

    def forward(self, x_seq):
        steps, batch = x_seq.shape[:2]
        current = self.conv(x_seq.flatten(0, 1)).unflatten(0, (steps, batch))  # conv on the (T*B) batch
        spk_seq, _ = self.lif(self.bn(current))  # BNTT over all steps at once, then the LIF scan
        return self.fc(spk_seq.flatten(2)).sum(0)


fast = MultiStepNet()
fast.load_state_dict(ours.state_dict())
difference = (fast(x_seq) - ours(x_seq)).abs().max().item()
print(f"multi-step vs the per-step loop: largest difference {difference:.2e}")
assert difference < 1e-4

# %% [markdown]
# The package's models are built this way (`bs.create_model("vgg9")`), and each
# also runs step by step with `model.forward_per_step(x_seq)`.
#
# ## 4. Train on digits and look at the gammas

# %%
train_set, test_set, _ = build_datasets("digits", "datasets")
loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True)
optimizer = torch.optim.SGD(fast.parameters(), lr=0.1, momentum=0.9)
epochs = 2 if QUICK else 15
start = time.perf_counter()
for _ in range(epochs):
    for images, labels in loader:
        loss = F.cross_entropy(fast(poisson(images, T)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
fast.eval()
with torch.no_grad():
    images, labels = test_set.tensors
    accuracy = (fast(poisson(images, T)).argmax(1) == labels).float().mean().item()
print(f"{epochs} epochs in {time.perf_counter() - start:.0f} s: test accuracy {100 * accuracy:.1f} %")

# %% [markdown]
# `bn.gammas` is the `(T, channels)` table of learned gammas; BNTT's early exit
# (tutorial 3) stops when their layer average falls below a threshold.

# %%
gammas = fast.bn.gammas
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(range(1, T + 1), gammas.mean(1), "ko-", label="mean over channels")
ax.fill_between(range(1, T + 1), gammas.min(1).values, gammas.max(1).values, alpha=0.2, label="min-max")
ax.set(xlabel="time step", ylabel="gamma", title="BNTT gamma per time step")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "gammas.png", dpi=110)
print(f"wrote {OUT / 'gammas.png'}")
