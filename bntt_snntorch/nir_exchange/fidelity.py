"""The fidelity report: per exported node, whether NIR's own values reproduce our layer, and why."""

from __future__ import annotations

from dataclasses import dataclass, field

from .common import META


@dataclass(frozen=True)
class NodeFidelity:
    """One node of an exported graph: whether NIR's own values reproduce our layer, and why."""

    node: str
    exact: bool
    why: str


@dataclass
class FidelityReport:
    """Per node, ``exact`` or ``approximate`` and the reason; ``str(report)`` is a markdown table."""

    nodes: list[NodeFidelity] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Whether every node is exact (the NIR values alone reproduce the network)."""
        return all(n.exact for n in self.nodes)

    @property
    def approximate(self) -> list[NodeFidelity]:
        """The nodes that are not exact."""
        return [n for n in self.nodes if not n.exact]

    def to_dict(self) -> dict:
        return {n.node: {"exact": n.exact, "why": n.why} for n in self.nodes}

    @classmethod
    def of(cls, graph) -> FidelityReport:
        """The report stored in ``graph``'s metadata by :func:`export_to_nir`."""
        stored = graph.metadata.get(META, {}).get("fidelity", {})
        return cls([NodeFidelity(name, bool(v["exact"]), str(v["why"])) for name, v in stored.items()])

    def __str__(self) -> str:
        lines = ["| node | fidelity | why |", "|---|---|---|"]
        lines += [f"| {n.node} | {'exact' if n.exact else 'approximate'} | {n.why} |" for n in self.nodes]
        return "\n".join(lines)
