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
# # Tutorial 8: Deploying with NIR, and what the export keeps
#
# NIR is the graph format neuromorphic hardware and other simulators read. NIR's nodes are
# continuous-time and the same at every step, so some of what a BNTT network does cannot be
# written in it: the export reports every node as exact or approximate and keeps the exact
# values in the node's metadata.
#
# 1. Train a digits network with the recipe that deploys exactly and export it.
# 2. Read the file back: with our importer, and with SpikingJelly's.
# 3. Export the default BNTT network and read why it is approximate.
# 4. The committed study: accuracy and spikes of every reader.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import nir
import torch

import bntt_snntorch as bs
from bntt_snntorch.training.runs import run_datasets

QUICK = os.environ.get("BNTT_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("BNTT_TUTORIAL_OUT", "tutorial_output/08"))
OUT.mkdir(parents=True, exist_ok=True)
RESULTS = Path(os.environ.get("BNTT_RESULTS_DIR", "results"))  # the committed studies (run from the repository root)

# %% [markdown]
# ## 1. The recipe that deploys exactly
# One batch norm over all steps (`norm="bn"`, which folds into the convolution) and the seed
# neuron resetting to zero in the step it fires (`neuron="bntt_leaky_zero"`, NIR's LIF).
# On the command line: `python train.py --norm bn --neuron bntt_leaky_zero`, then
# `bntt-export --checkpoint RUN/best.pt --output model.nir`.

# %%
cfg = bs.TrainConfig.from_recipe(
    "digits", norm="bn", neuron="bntt_leaky_zero", output_dir=str(OUT / "exact"), progress=False,
    **(dict(num_epochs=1, max_batches=5) if QUICK else dict(num_epochs=10)),
)  # fmt: skip
model = bs.train(cfg).model.eval()

_, test_set, _ = run_datasets(cfg, progress=False)
images, labels = next(iter(torch.utils.data.DataLoader(test_set, batch_size=len(test_set))))
x_seq = bs.encoding.encode(images, cfg.num_steps, "p", torch.Generator().manual_seed(1))  # (T, B, 1, 8, 8)

graph = bs.export_to_nir(model, x_seq[0], encoding="p")
nir.write(str(OUT / "model.nir"), graph)
report = bs.FidelityReport.of(graph)
print(f"exact: {report.exact}")
print(report)

# %% [markdown]
# ## 2. Read it back
# `import_from_nir` builds a `NIRNetwork`: `net(x_seq)` is the graph's output at every step,
# and the prediction is its mean over T (NIR cannot average over time, so the reader does).


# %%
def accuracy(readout_per_step: torch.Tensor) -> float:
    return 100 * (readout_per_step.mean(0).argmax(-1) == labels).float().mean().item()


with torch.no_grad():
    trained = model.classifier(model.features(x_seq))  # (T, B, classes)
    ours = bs.import_from_nir(nir.read(str(OUT / "model.nir")))(x_seq)
print(f"trained {accuracy(trained):.2f} %, our import {accuracy(ours):.2f} %, equal: {torch.equal(ours, trained)}")

# %% [markdown]
# SpikingJelly reads the same file (its modules are called step by step with their state):

# %%
from spikingjelly.activation_based.nir_exchange import import_from_nir as spikingjelly_import  # noqa: E402

peer, state, steps = spikingjelly_import(nir.read(str(OUT / "model.nir"))), None, []
with torch.no_grad():
    for x_t in x_seq:
        out, state = peer(x_t) if state is None else peer(x_t, state)
        steps.append(out)
peer_readout = torch.stack(steps)
print(f"SpikingJelly {accuracy(peer_readout):.2f} %, largest difference {(peer_readout - trained).abs().max():.1e}")

# %% [markdown]
# The accuracy after reading the first t steps (the mean readout so far), as each of the three
# computes it: the curves lie on each other.


# %%
def accuracy_by_step(readout_per_step: torch.Tensor) -> list[float]:
    predictions = readout_per_step.cumsum(0).argmax(-1)  # (T, B): the prediction after t steps
    return (100 * (predictions == labels).float().mean(1)).tolist()


fig, ax = plt.subplots(figsize=(6, 3.5))
steps_read = range(1, len(trained) + 1)
readers = {"trained": (trained, "-"), "our import": (ours, "--"), "SpikingJelly": (peer_readout, ":")}
for name, (readout, style) in readers.items():
    ax.plot(steps_read, accuracy_by_step(readout), style, marker="o", label=name)
ax.set(xlabel="time steps read", ylabel="test accuracy (%)", title="the exact export, read back")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 3. The default BNTT network
# BNTT has statistics and a gamma per step and the seed neuron resets by subtraction; NIR has
# neither. The report says which nodes are approximate and what was folded:

# %%
default = bs.create_model("bntt_digits", num_steps=cfg.num_steps).eval()
report = bs.FidelityReport.of(bs.export_to_nir(default, x_seq[0], encoding="p"))
print(f"{len(report.approximate)} of {len(report.nodes)} nodes approximate; e.g.")
for node in report.approximate[:2]:
    print(f"- {node.node}: {node.why}")

# %% [markdown]
# ## 4. The committed study
# `python -m bntt_snntorch compare-nir --dataset digits` trains both networks, exports them and
# reads them back with us, SpikingJelly 2.0 and snnTorch:

# %%
table = RESULTS / "nir-digits" / "comparison.md"
print(table.read_text() if table.exists() else f"{table} is not here (run the command it names to make it)")
