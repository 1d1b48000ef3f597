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
# # Tutorial 2: Training on event data
#
# An event camera (DVS) does not take pictures: each pixel reports an *event*
# `(t, x, y, polarity)` whenever its log brightness changes by a threshold. The
# BNTT paper trains on DVS-CIFAR10, CIFAR-10 images shown to such a camera. That
# data set is 7 GB, so this tutorial uses its offline twin, **digits-dvs**:
# scikit-learn's digits seen by a simulated event camera that makes three small
# saccades, as N-MNIST was recorded. Both go through the same code:
#
# events --`tonic.transforms.ToFrame(n_time_bins=T)`--> frames `(T, 2, H, W)`
# --> disk cache --> BNTT network, one frame per time step.
#
# For the real data set, put the extracted recordings in
# `datasets/CIFAR10DVS/<class>/*.aedat4` and run
# ```bash
# python train.py --dataset cifar10-dvs --arch vgg9 --num_steps 20 --dvs-size 64 --batch_size 32
# ```

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import tonic

from bntt_snntorch import TrainConfig, train
from bntt_snntorch.data import DataOptions, DigitsDVS, build_datasets
from bntt_snntorch.data.aedat4 import write_aedat4

QUICK = os.environ.get("BNTT_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("BNTT_TUTORIAL_OUT", "tutorial_output/02"))
DATA = Path(os.environ.get("BNTT_TUTORIAL_DATA", "datasets"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. One recording
# `DigitsDVS()[i]` returns a tonic-style structured array of events and the label.

# %%
recordings = DigitsDVS()
events, label = recordings[0]
print(f"digit {label}: {len(events)} events over {events['t'].max() / 1e3:.0f} ms, {100 * events['p'].mean():.0f} % ON")
assert len(events) > 0 and events["p"].any() and (~events["p"]).any()

# %% [markdown]
# It is a real event stream: we can write it as an AEDAT4 file (the format
# DVS-CIFAR10 ships in) and read it back with tonic's reader.

# %%
write_aedat4(OUT / "digit0.aedat4", events, width=16, height=16)
back = tonic.io.read_aedat4(str(OUT / "digit0.aedat4"))
assert np.array_equal(back["t"].astype(np.int64), events["t"]) and len(back) == len(events)

# %% [markdown]
# ## 2. From events to frames
# `ToFrame(n_time_bins=T)` splits the recording into T equal time bins and counts
# the events of each polarity per pixel.

# %%
T = 10
frames = tonic.transforms.ToFrame(sensor_size=DigitsDVS.sensor_size, n_time_bins=T)(events)
print("frames:", frames.shape)  # (T, 2, 16, 16)
fig, axes = plt.subplots(2, T, figsize=(T * 1.2, 2.8))
for t in range(T):
    for p in range(2):  # OFF, ON
        axes[p, t].imshow(frames[t, p], cmap="gray")
        axes[p, t].set_axis_off()
    axes[0, t].set_title(f"t={t + 1}", fontsize=8)
fig.suptitle(f"digit {label}: OFF (top) and ON (bottom) events per time bin")
fig.tight_layout()
fig.savefig(OUT / "frames.png", dpi=100)

# %% [markdown]
# ## 3. The data set and its cache
# `build_datasets` frames every recording once and stores the frames under
# `<data>/frame-cache/<key>/`; the key hashes T, the frame size, the tonic
# transform and tonic's version, so changing any of them rebuilds it. Later
# epochs read a memory-mapped array. Training frames are flipped and shifted.

# %%
train_set, test_set, info = build_datasets("digits-dvs", DATA, options=DataOptions(num_steps=T))
x, y = train_set[0]
print(f"{len(train_set)} training / {len(test_set)} test recordings; one sample {tuple(x.shape)} {x.dtype}")
print("cache folders:", [p.name for p in (DATA / "frame-cache").iterdir()])

# %% [markdown]
# ## 4. Train a BNTT network on the frames
# `train(TrainConfig.from_recipe(dataset="digits-dvs"))` (the same as `train.py
# --dataset digits-dvs`) uses the digits-dvs recipe; the frames are the input at
# each step, so there is no rate coding (`encode = "events"`).

# %%
quick = dict(num_epochs=1, max_batches=5) if QUICK else dict(num_epochs=10)
cfg = TrainConfig.from_recipe(
    dataset="digits-dvs", data_dir=str(DATA), output_dir=str(OUT / "run"), progress=False, **quick
)
result = train(cfg)
print(f"test accuracy {100 * result.test_acc:.1f} %")
assert (OUT / "run" / "metrics.csv").exists()
