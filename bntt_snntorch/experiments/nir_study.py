"""What a NIR export keeps, measured: a trained network against its NIR file as we, SpikingJelly and
snnTorch read it back (what ``python -m bntt_snntorch compare-nir`` runs).

``compare_nir(NIRStudyOptions(...)) -> rows``. Trains (or reuses) two runs of the data set's recipe:
``exact`` (``--norm bn --neuron bntt_leaky_zero``: BN over time folds into the synapses and the
neuron resets to zero in the step it fires, so every node of the export is exact) and ``bntt`` (the
default BNTT network: per-step BNTT and reset by subtraction, approximate in NIR). Exports each to
``OUTPUT/<net>/model.nir`` (+ ``model.fidelity.md``), then feeds the same test spikes to

(a) the trained network, (b) our import of the file (``import_from_nir``, the exact values from the
metadata), (b') our import of the NIR values only (``use_metadata=False``), (c) SpikingJelly 2.0's
``import_from_nir``, (d) snnTorch's ``import_from_nir``,

and reports the test accuracy (mean over T of the readout), the largest output difference to (a) and,
per spiking layer, how many spikes differ from (a). For a network whose export is approximate, two more
rows split the cost between the two approximations: the trained network with only its BNTT folded to the
mean over the steps (what NIR holds), and with only its neurons resetting to zero. Writes
``comparison.md`` / ``.csv``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import encoding
from ..bntt import BatchNormTT, BatchNormTT2d
from ..files import write_csv, write_text
from ..layers import SpikingBlock
from ..neurons import Leaky
from ..nir_exchange import FidelityReport, import_from_nir, nir_module, per_step_affine
from ..training import TrainConfig, load_run, train_or_resume
from ..training.runs import run_datasets
from .command_line import command_line
from .export import ExportOptions, export_run

NETWORKS = {
    "exact": dict(norm="bn", neuron="bntt_leaky_zero"),
    "bntt": dict(),
}
READERS = ("trained", "ours", "ours (NIR values only)", "SpikingJelly 2.0", "snnTorch")
FOLD_ONLY, RESET_ONLY = "trained, only BNTT folded", "trained, only reset to zero"


def bntt_folded(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` (eval mode) whose BNTT layers apply, at every step, the mean over the steps of their
    per-step scale ``k_t`` and shift ``b_t`` — the fold a NIR export writes — and nothing else changed."""
    folded = copy.deepcopy(model).eval()
    for norm in folded.modules():
        if isinstance(norm, BatchNormTT):
            ks, bs = per_step_affine(norm, 2 if isinstance(norm, BatchNormTT2d) else 1)
            k, b = (torch.as_tensor(a.mean(0), dtype=torch.float32) for a in (ks, bs))
            with torch.no_grad():
                for bn in norm:  # k x + b as batch norm without bias: weight k, variance 1 - eps, mean -b / k
                    bn.weight.copy_(k)
                    bn.running_var.fill_(1 - bn.eps)
                    bn.running_mean.copy_(-b / k)
    return folded


def reset_to_zero(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` (eval mode) whose neurons reset to zero instead of by subtraction (NIR's reset)."""
    changed = copy.deepcopy(model).eval()
    for neuron in changed.modules():
        if isinstance(neuron, Leaky) and neuron.reset_mechanism == "subtract":
            neuron.reset_mechanism = "zero"
    return changed


@dataclass
class NIRStudyOptions:
    """What :func:`compare_nir` trains and measures."""

    dataset: str = "digits"
    recipe: str | None = None  # default: the data set's (a finished run of another recipe is refused)
    seed: int = 0
    num_epochs: int | None = None  # default: the recipe's
    output_dir: str | None = None  # default: runs/nir-<dataset>
    max_test_images: int | None = None  # default: the whole test set
    data_dir: str | None = None
    progress: bool = True


def compare_nir(options: NIRStudyOptions | None = None) -> list[dict]:
    """Train (or reuse) both networks, export them, read them back four ways; returns the rows."""
    o = options or NIRStudyOptions()
    out = Path(o.output_dir or f"runs/nir-{o.dataset}")
    rows, reports = [], {}
    for net, settings in NETWORKS.items():
        run = train_or_resume(
            TrainConfig.from_recipe(
                o.recipe, dataset=o.dataset, seed=o.seed, output_dir=str(out / net / "run"), num_epochs=o.num_epochs,
                data_dir=o.data_dir, device="cpu", progress=o.progress, **settings,
            )
        )  # fmt: skip
        reports[net] = export_run(run / "last.pt", out / net / "model.nir", ExportOptions())
        rows += measure(run / "last.pt", out / net / "model.nir", net, o)
    _write(rows, reports, out, o)
    print((out / "comparison.md").read_text())
    return rows


def _test_spikes(cfg: TrainConfig, o: NIRStudyOptions):
    _, test_set, _ = run_datasets(cfg, o.data_dir, progress=False)
    n = len(test_set) if o.max_test_images is None else min(o.max_test_images, len(test_set))
    images, labels = next(iter(DataLoader(test_set, batch_size=n, shuffle=False)))
    generator = torch.Generator().manual_seed(cfg.eval_seed)
    return encoding.encode(images, cfg.num_steps, cfg.encode, generator), labels


@torch.no_grad()
def _trained(model, x_seq):
    """``(per-step readout (T, B, classes), {block name: spikes (T, B, ...)})`` of a SpikingNet."""
    spikes, hooks = {}, []
    for i, layer in enumerate(model.features):
        if isinstance(layer, SpikingBlock):
            name = f"features_{i}_neuron"
            hooks.append(layer.register_forward_hook(lambda m, a, y, name=name: spikes.__setitem__(name, y)))
    try:
        readout = model.classifier(model.features(x_seq))
    finally:
        for h in hooks:
            h.remove()
    return readout, spikes


@torch.no_grad()
def _ours(graph, x_seq, use_metadata: bool, neuron_names: list[str]):
    """Our import of ``graph``: ``(per-step readout, {neuron node: spikes})``; its spiking blocks, in order, are
    the graph's neuron nodes ``neuron_names``."""
    net = import_from_nir(graph, use_metadata=use_metadata).eval()
    blocks = [layer for layer in net.layers.children() if isinstance(layer, SpikingBlock)]
    if len(blocks) != len(neuron_names):
        raise ValueError(f"our import has {len(blocks)} spiking blocks, the graph {len(neuron_names)} neuron nodes")
    spikes, hooks = {}, []
    for name, layer in zip(neuron_names, blocks):
        hooks.append(layer.register_forward_hook(lambda m, a, y, name=name: spikes.__setitem__(name, y)))
    try:
        readout = net(x_seq)
    finally:
        for h in hooks:
            h.remove()
    return readout, spikes


class PeerRefused(Exception):
    """A peer's importer or its modules refused our NIR file (the study records why)."""


def _peer(call, *args):
    """``call(*args)`` of a peer's code (its importer, its modules): whatever it raises is its refusal of our file,
    said in one line (:class:`PeerRefused`); our own code around it is not wrapped, so our bugs propagate."""
    try:
        return call(*args)
    except Exception as err:  # the peer's own errors have no common type
        raise PeerRefused(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err


def _per_step(net, x_seq, neuron_names, call):
    """Run a peer's module step by step with ``call(net, x_t, state) -> (out, state)``; spikes by hooks on
    the modules named after the neuron nodes."""
    spikes, hooks = {name: [] for name in neuron_names}, []
    for name in neuron_names:
        module = net.get_submodule(name)
        hooks.append(module.register_forward_hook(lambda m, a, y, name=name: spikes[name].append(_first(y))))
    outs, state = [], None
    try:
        for x_t in x_seq:
            out, state = call(net, x_t, state)
            outs.append(_first(out))
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(outs), {k: torch.stack(v) for k, v in spikes.items()}


def _first(y):
    return y[0] if isinstance(y, tuple) else y


@torch.no_grad()
def read_with_spikingjelly(graph, x_seq, neuron_names):
    """SpikingJelly 2.0's import of ``graph`` run step by step: ``(outputs (T, B, ...), {neuron node: spikes})``."""
    from spikingjelly.activation_based.nir_exchange import import_from_nir as sj_import

    net = _peer(sj_import, graph)
    return _per_step(net, x_seq, neuron_names, lambda n, x, s: _peer(n, x) if s is None else _peer(n, x, s))


@torch.no_grad()
def read_with_snntorch(graph, x_seq, neuron_names):
    """snnTorch's import of ``graph``, one image at a time: its Flatten maps NIR's ``start_dim=0`` (the first dimension
    of one sample, as NIR's shapes have no batch dimension) to ``torch.nn.Flatten(0)``, which also
    flattens the batch; with one image the two agree."""
    from snntorch.import_nir import import_from_nir as st_import

    net = _peer(st_import, graph)
    outs, spikes = [], {name: [] for name in neuron_names}
    for b in range(x_seq.shape[1]):
        for module in net.modules():
            if hasattr(module, "reset_mem"):
                module.reset_mem()
        out, s = _per_step(net, x_seq[:, b : b + 1], neuron_names,
                           lambda n, x, st: _peer(n, x) if st is None else _peer(n, x, st))  # fmt: skip
        outs.append(out)
        for name in neuron_names:
            spikes[name].append(s[name])
    return torch.cat(outs, 1), {name: torch.cat(v, 1) for name, v in spikes.items()}


def measure(checkpoint: Path, nir_file: Path, net: str, o: NIRStudyOptions) -> list[dict]:
    """One row per reader: accuracy, output difference and spike differences against the trained network."""
    nir = nir_module()
    model, cfg, _ = load_run(checkpoint, "cpu")
    x_seq, labels = _test_spikes(cfg, o)
    ref_out, ref_spikes = _trained(model, x_seq)
    graph = nir.read(str(nir_file))
    names = list(ref_spikes)
    readers = {
        "trained": lambda: (ref_out, ref_spikes),
        "ours": lambda: _ours(graph, x_seq, True, names),
        "ours (NIR values only)": lambda: _ours(graph, x_seq, False, names),
        "SpikingJelly 2.0": lambda: read_with_spikingjelly(graph, x_seq, names),
        "snnTorch": lambda: read_with_snntorch(graph, x_seq, names),
    }
    if not FidelityReport.of(graph).exact:
        readers[FOLD_ONLY] = lambda: _trained(bntt_folded(model), x_seq)
        readers[RESET_ONLY] = lambda: _trained(reset_to_zero(model), x_seq)
    rows = []
    for reader, read in readers.items():
        row = dict(net=net, reader=reader, exact_export=FidelityReport.of(graph).exact)
        try:
            out, spikes = read()
        except PeerRefused as err:  # a peer refuses the file: say why
            rows.append({**row, "refused": str(err)})
            continue
        out = out.reshape(ref_out.shape)
        differing = {n: int((spikes[n].reshape(ref_spikes[n].shape) != ref_spikes[n]).sum()) for n in names}
        total = sum(int(s.numel()) for s in ref_spikes.values())
        rows.append({
            **row,
            "test_acc": float((out.mean(0).argmax(-1) == labels).float().mean()),
            "max_output_diff": float((out - ref_out).abs().max()),
            "differing_spikes": sum(differing.values()),
            "spike_positions": total,
            "per_layer": differing,
        })  # fmt: skip
    return rows


def _write(rows: list[dict], reports: dict, out: Path, o: NIRStudyOptions) -> None:
    write_csv(out / "comparison.csv", [{k: v for k, v in r.items() if k != "per_layer"} for r in rows])
    lines = [
        f"# NIR export and import on {o.dataset}: what each reader gets back",
        "",
        "Two networks of the same recipe and seed: **exact** (`--norm bn --neuron bntt_leaky_zero`: every node "
        "of the export exact) and **bntt** (the default BNTT network: per-step BNTT and reset by subtraction, "
        "approximate). Each exported to NIR, read back, and fed the same test spikes (Poisson, the evaluation "
        "seed); test accuracy of the mean readout over T, largest output difference to the trained network, and "
        "spike positions (neurons x steps x images) whose spike differs from the trained network's. For the "
        f'approximate export, "{FOLD_ONLY}" and "{RESET_ONLY}" are the trained network with one of the two '
        "approximations applied, which splits the cost between them.",
        "",
        f"Command: `{command_line('compare-nir', o)}`",
        "",
        "| network | reader | test acc. (%) | max output diff. | differing spikes | per layer |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "refused" in r:
            lines.append(f"| {r['net']} | {r['reader']} | refused: {r['refused']} | | | |")
            continue
        per_layer = ", ".join(f"{k}: {v}" for k, v in r["per_layer"].items())
        lines.append(
            f"| {r['net']} | {r['reader']} | {100 * r['test_acc']:.2f} | {r['max_output_diff']:.2e} | "
            f"{r['differing_spikes']} of {r['spike_positions']} | {per_layer} |"
        )
    for net, report in reports.items():
        lines += ["", f"## Fidelity of the `{net}` export", "", str(report)]
    write_text(out / "comparison.md", "\n".join(lines) + "\n")
