"""Export a trained run to a NIR file with its fidelity report (what ``python -m bntt_snntorch export`` runs).

``export_run(checkpoint, output, ExportOptions(...)) -> FidelityReport`` writes ``output`` (a ``.nir``
HDF5 file, :func:`bntt_snntorch.nir_exchange.export_to_nir`) and ``<output stem>.fidelity.md`` beside
it: per node ``exact`` or ``approximate`` and why, the input the graph expects, its readout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import dataset_info
from ..files import write_text
from ..nir_exchange import DT, FidelityReport, export_to_nir, nir_module
from ..training import CheckpointError, load_run


@dataclass
class ExportOptions:
    """How :func:`export_run` writes the graph."""

    dt: float = DT  # the NIR time step (seconds) of the LIF discretisation, beta = 1 - dt / tau


def fidelity_markdown(report: FidelityReport, graph, source: str) -> str:
    """The report as the markdown file ``export_run`` writes."""
    meta = graph.metadata["bntt_snntorch"]
    verdict = "every node is exact" if report.exact else f"{len(report.approximate)} node(s) approximate"
    return "\n".join([
        f"# NIR export of {source}: {verdict}",
        "",
        f"- input, one time step a call: {meta['input']}",
        f"- output: the readout's current at each step; prediction: {meta['readout']}",
        f"- discretisation: dt = {meta['dt']:g} s; LIF tau = dt / (1 - beta), r = tau / dt (v_t = beta v_(t-1) + I_t)",
        "- approximate nodes keep their exact values in the node's metadata (key `bntt_snntorch`): "
        "`bntt_snntorch.import_from_nir` restores them; other importers read the NIR values",
        "",
        str(report),
        "",
    ])  # fmt: skip


def export_run(checkpoint: str | Path, output: str | Path, options: ExportOptions | None = None) -> FidelityReport:
    """Export the trained spiking network of ``checkpoint`` (a run folder or checkpoint file) to ``output``."""
    o = options or ExportOptions()
    nir = nir_module()
    model, cfg, ckpt_path = load_run(checkpoint, "cpu")
    info = dataset_info(cfg.dataset, getattr(cfg, "dvs_size", None))
    if cfg.encode == "none":
        raise CheckpointError(
            f"{ckpt_path} is an ANN ({cfg.arch}); NIR has no ReLU node: convert it first "
            "(python -m bntt_snntorch convert) and export the converted network from Python"
        )
    sample = torch.zeros(1, info.in_channels, info.image_size, info.image_size)
    graph = export_to_nir(model, sample, dt=o.dt, encoding=cfg.encode)
    report = FidelityReport.of(graph)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    nir.write(str(partial), graph)
    partial.replace(output)  # atomic: a killed export leaves no half-written file under the name
    write_text(output.with_name(f"{output.stem}.fidelity.md"), fidelity_markdown(report, graph, str(ckpt_path)))
    verdict = "exact" if report.exact else f"approximate in {len(report.approximate)} node(s)"
    print(f"wrote {output} ({verdict}; see {output.stem}.fidelity.md beside it)")
    return report
