"""NIR export and import that say exactly what they keep (``pip install 'bntt_snntorch[nir]'``).

NIR (the Neuromorphic Intermediate Representation, ``nir`` 1.0) writes a network as a graph of
continuous-time nodes (Affine, Conv2d, AvgPool2d, Flatten, LIF, IF, Scale, ...) that neuromorphic
hardware and other simulators read. :func:`export_to_nir` writes one of our spiking networks (every
spiking model of the registry, a converted SNN, or an ``nn.Sequential`` of our or snnTorch's layers);
:func:`import_from_nir` builds a :class:`NIRNetwork` from a graph. Every exported node is reported
``exact`` or ``approximate`` with the reason (:class:`FidelityReport`, also in the graph's metadata).

The discretisation is snnTorch's and SpikingJelly's, with step ``dt`` (default 1e-4 s): a leaky
neuron with leak ``beta`` is ``LIF(tau = dt / (1 - beta), r = tau / dt, v_leak = 0, v_reset = 0)``,
whose forward-Euler step is ``v_t = beta * v_(t-1) + I_t``; ``beta = 1`` is ``IF(r = 1 / dt)``.
NIR resets to ``v_reset`` in the step that fires:

* **exact**: conv / linear synapses; a normalisation whose scale and shift are the same at every
  step (BN over time, tdBN, BNTT whose per-step statistics and gammas are equal), folded into the
  synapse's weight and bias (equal up to float rounding); a reset-to-zero neuron that resets in the
  step it fires (``bntt_leaky_zero``, snnTorch's ``reset_delay=False``); graded spikes (a Scale
  node); average pooling; flatten; the readout.
* **approximate**: BNTT (and TEBN) with per-step parameters: NIR has no time-varying node, so the
  mean over the T steps of the per-channel scale ``k_t = gamma_t / sqrt(var_t + eps)`` and shift
  ``b_t = beta_t - mean_t * k_t`` is folded; reset by subtraction, and snnTorch's delayed reset,
  are written as NIR's reset to zero. The exact values (the synapse's own weight, the norm's state,
  the neuron's reset) are kept in the node's metadata (key ``"bntt_snntorch"``), from which
  :func:`import_from_nir` restores the network exactly; other importers read the NIR values.

The graph's input is one time step of what the first layer receives (spikes for Poisson coding,
the analog image for direct coding: ``graph.metadata["bntt_snntorch"]["input"]``); its output is
the readout's current at each step, and the prediction is the mean over the T steps
(``metadata["bntt_snntorch"]["readout"] == "mean over T"``), which NIR cannot express: the
consumer averages. Spikes fire when the membrane is strictly above the thresho

One module a job: :mod:`.export` (with :mod:`.walk`, the model as parts, and :mod:`.norms`, the
norms as affine maps), :mod:`.importer`, :mod:`.modules` (what an import builds) and
:mod:`.fidelity` (the report).
"""

# the package's names (documented where they are defined: the API reference lists the modules)
from .common import DT, ENCODINGS, META, READOUT_MEAN, nir_module  # noqa: F401
from .export import export_to_nir  # noqa: F401
from .fidelity import FidelityReport, NodeFidelity  # noqa: F401
from .importer import import_from_nir  # noqa: F401
from .modules import NIRNetwork, PerStepAffine, StepDelay  # noqa: F401
from .norms import per_step_affine  # noqa: F401
