"""Matplotlib figures written as PNGs.

Figures are built with ``matplotlib.figure.Figure`` directly, outside pyplot: no display is
needed and the caller's pyplot backend (a notebook's inline plots) is left alone.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _figure(nrows: int = 1, ncols: int = 1, figsize=(6, 4)):
    """``(figure, axes)`` like ``plt.subplots``, without pyplot's global state."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols)


def plot_training_curves(rows: list[dict], path, label_smoothing: float = 0.0) -> Figure:
    """Loss and accuracy per epoch (rows of ``metrics.csv``) -> PNG at ``path``; ``label_smoothing``: the
    training loss's (named in its legend: that loss sits above the test loss's plain cross-entropy)."""
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = _figure(1, 2, figsize=(10, 4))
    train = f"train (label smoothing {label_smoothing:g})" if label_smoothing else "train"
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label=train)
    ax_loss.plot(epochs, [r["test_loss"] for r in rows], "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in rows], "o-", label="train")
    ax_acc.plot(epochs, [100 * r["test_acc"] for r in rows], "s-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs, a 1-epoch run too
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_gamma_curves(curves: dict, mean_curve, exit_at: int | None, threshold: float | None, path) -> Figure:
    """Mean BNTT gamma per step for each layer, the layer average, and the exit step (the paper's figure)."""
    fig, ax = _figure(figsize=(7, 4.5))
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, alpha=0.6, lw=1, label=name)
    ax.plot(range(1, len(mean_curve) + 1), mean_curve, "k-", lw=2.5, label="layer average")
    if threshold is not None:
        ax.axhline(threshold, color="r", ls=":", lw=1, label=f"exit threshold {threshold:g}")
    if exit_at is not None:
        ax.axvline(exit_at + 0.5, color="r", ls="--", lw=1, label=f"exit after step {exit_at}")
    ax.set(xlabel="time step", ylabel="mean gamma", title="BNTT gamma over time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_accuracy_vs_steps(accuracy, exit_at: int | None, path, title="Accuracy vs exit step") -> Figure:
    """Test accuracy when running 1..T steps, with the gamma-chosen exit step marked."""
    steps = range(1, len(accuracy) + 1)
    fig, ax = _figure(figsize=(6, 4))
    ax.plot(steps, [100 * a for a in accuracy], "o-")
    if exit_at is not None:
        ax.axvline(
            exit_at, color="r", ls="--", label=f"gamma exit: {exit_at} steps, {100 * accuracy[exit_at - 1]:.2f}%"
        )
        ax.legend()
    ax.set(xlabel="time steps run", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_spike_rates(rows: list[dict], path) -> Figure:
    """Spike rate of each spiking layer (fraction of neurons firing per step)."""
    layers = [r for r in rows if r.get("output_rate") is not None]
    fig, ax = _figure(figsize=(7, 4))
    ax.bar(range(len(layers)), [100 * r["output_rate"] for r in layers])
    ax.set_xticks(range(len(layers)), [r["name"] for r in layers], rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="spike rate (% of neurons per step)", title="Spike rate per layer")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_energy(rows: list[dict], path) -> Figure:
    """ANN vs SNN energy per layer (log scale) and the totals."""
    layers = [r for r in rows if r["name"] != "total"]
    total = next(r for r in rows if r["name"] == "total")
    x = range(len(layers))
    fig, ax = _figure(figsize=(8, 4.5))
    ax.bar(
        [i - 0.2 for i in x],
        [r["ann_pj"] / 1e6 for r in layers],
        width=0.4,
        label=f"ANN (MACs), total {total['ann_pj'] / 1e6:.2f} uJ",
    )
    ax.bar(
        [i + 0.2 for i in x],
        [r["snn_pj"] / 1e6 for r in layers],
        width=0.4,
        label=f"SNN (ACs), total {total['snn_pj'] / 1e6:.2f} uJ",
    )
    ax.set_xticks(list(x), [r["name"] for r in layers], rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="energy per image (uJ)", yscale="log", title="Energy per layer (45 nm: 4.6 pJ/MAC, 0.9 pJ/AC)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_coding_comparison(rows: list[dict], eps_list, path_steps, path_eps) -> None:
    """Clean accuracy vs T, and FGSM / PGD accuracy vs eps at the largest T, per coding."""
    codings = sorted({r["coding"] for r in rows})
    fig, ax = _figure(figsize=(6, 4))
    for coding in codings:
        rs = sorted((r for r in rows if r["coding"] == coding), key=lambda r: r["T"])
        ax.plot([r["T"] for r in rs], [100 * r["clean_acc"] for r in rs], "o-", label=coding)
    ax.set(xlabel="time steps T", ylabel="clean test accuracy (%)", title="Accuracy vs time steps")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path_steps, dpi=110)

    fig, ax = _figure(figsize=(6, 4))
    for coding, marker in zip(codings, "os"):
        r = max((r for r in rows if r["coding"] == coding), key=lambda r: r["T"])
        ax.plot(
            eps_list, [100 * r[f"fgsm_{e:g}"] for e in eps_list], marker + "-", label=f"{coding}, FGSM (T={r['T']})"
        )
        ax.plot(eps_list, [100 * r[f"pgd_{e:g}"] for e in eps_list], marker + "--", label=f"{coding}, PGD (T={r['T']})")
    ax.set(xlabel="eps (pixel units)", ylabel="accuracy under attack (%)", title="Robustness")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_eps, dpi=110)


def plot_conversion(snn_accuracy, ann_accuracy: float, path, title="Converted SNN: accuracy vs time steps") -> Figure:
    """Accuracy of the converted SNN after 1..T steps, with its ANN's accuracy as a line."""
    steps = range(1, len(snn_accuracy) + 1)
    fig, ax = _figure(figsize=(6, 4))
    ax.plot(steps, [100 * a for a in snn_accuracy], "-", label=f"SNN (after T: {100 * snn_accuracy[-1]:.2f}%)")
    ax.axhline(100 * ann_accuracy, color="k", ls="--", lw=1, label=f"ANN {100 * ann_accuracy:.2f}%")
    ax.set(xlabel="time steps", ylabel="test accuracy (%)", title=title, ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_conversion_comparison(curves: dict, ann_accuracy: dict, path) -> Figure:
    """Accuracy vs time steps of several converted SNNs (``{label: [acc per step]}``), with the
    ANN accuracies (``{precision: acc}``) as dashed lines."""
    fig, ax = _figure(figsize=(7, 4.5))
    for label, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), [100 * a for a in curve], label=f"SNN {label}")
    for (precision, acc), color in zip(ann_accuracy.items(), ("k", "gray")):
        ax.axhline(100 * acc, color=color, ls="--", lw=1, label=f"ANN {precision} {100 * acc:.2f}%")
    ax.set(
        xlabel="time steps", ylabel="test accuracy (%)", title="ANN -> SNN conversion: accuracy vs time", ylim=(0, 100)
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_norm_comparison(accuracy: dict, gains: dict, path_accuracy, path_gains, dataset: str) -> None:
    """Mean test accuracy per exit step for each normalisation; per-step gains (BNTT gamma, TEBN scale)."""
    _accuracy_curves(accuracy, "time steps run (exit step)", f"Accuracy vs exit step, {dataset}", path_accuracy)
    fig, ax = _figure(figsize=(6, 4))
    for name, values in gains.items():
        ax.plot(
            range(1, len(values) + 1),
            values,
            "o-",
            ms=3,
            label=f"{name} ({'mean gamma' if name == 'BNTT' else 'scale'})",
        )
    ax.axhline(0.1, color="r", ls="--", lw=1, label="BNTT exit threshold 0.1")
    ax.set(xlabel="time step", ylabel="per-step gain", title=f"Learned per-step gains, {dataset}", ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path_gains, dpi=110)


def plot_training_comparison(accuracy: dict, path, dataset: str) -> Figure:
    """Mean test accuracy per epoch for each gradient rule (BPTT, SLTT, ...)."""
    return _accuracy_curves(accuracy, "epoch", f"BPTT vs online training, {dataset}", path)


def _accuracy_curves(accuracy: dict, xlabel: str, title: str, path) -> Figure:
    """One line per name: accuracies (fractions) at x = 1, 2, ..., in percent."""
    fig, ax = _figure(figsize=(6, 4))
    for name, values in accuracy.items():
        ax.plot(range(1, len(values) + 1), [100 * a for a in values], "o-", ms=3, label=name)
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_online_memory(rows: list[dict], path) -> Figure:
    """Bytes held for backward (peak over a training step) against T, one line per gradient rule."""
    fig, ax = _figure(figsize=(6, 4))
    for mode in dict.fromkeys(r["mode"] for r in rows):
        points = [(r["num_steps"], r["peak_saved_mib"]) for r in rows if r["mode"] == mode]
        ax.plot(*zip(*points), "o-", ms=4, label=mode)
    ax.set(xscale="log", yscale="log", xlabel="time steps T", ylabel="peak saved for backward (MiB)",
           title="Training memory vs T (VGG9, batch 8)")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig
