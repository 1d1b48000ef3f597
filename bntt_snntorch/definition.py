"""The fused ``BNTT -> leaky`` block, written once: the neuron's step, the local derivatives its backward
needs, each surrogate's derivative, BNTT's statistics, coefficients, running statistics and backward, and
the list of variants the kernels ship.

Every backend is built from the functions below:

* the per-step reference (:func:`bntt_snntorch.functional.leaky_step`) composes ``charge`` and
  ``membrane_after`` with autograd (spikes through the surrogate's autograd function), and every
  surrogate of :mod:`bntt_snntorch.surrogate` takes its derivative from here;
* the eager torch scans (``kernels.torch_scan``, ``kernels.bntt_scan``) and the compiled CPU
  steps (``kernels.compiled_steps``) call them on ``(B, ...)`` tensors;
* the C loops (``kernels.c_bntt``) call the same source run on C-expression placeholders
  (``kernels.c_definition`` writes each function out as a C function);
* the Triton kernels (``kernels.triton_scan``, ``kernels.triton_bntt``) call the same source
  compiled by ``triton.jit`` (``kernels.triton_definition`` binds Triton's primitives).

So the functions are written in a backend-neutral subset of Python: arithmetic, comparisons
only through :func:`fire`, the primitives below (``relu``, ``exp``, ``sqrt``, ``clamp``, ``lerp``, the
precision casts ``wide`` / ``single`` / ``like``) and the builtin ``abs``, and branches only on the
variant codes (``RESET``, ``DELAYED``, ``SAME``, ``SURR``, ``TRAINING``, ``ROUND``: compile-time constants
in C and Triton). They return tensors in every branch. Only the loops around them (which values a
thread sums, in which order) are written per backend.

The update, for the previous membrane ``m`` and input ``x`` (``r``: the previous step's reset,
``S``: this step's spike, ``g``: the graded-spikes factor)::

    r = H(m - theta)                       (variants with a delayed or snnTorch same-step reset)
    h = beta m + x - r theta               (snnTorch's subtract reset from the previous step)
      = beta (1 - r) m + x                 (snnTorch's zero reset from the previous step)
      = beta m + x                         (otherwise)
    S = H(h - theta),  spk = g S
    m' = h - (S - r) theta | h - (S - r) h (snnTorch's reset_delay=False: same step, not detached)
       = h - S theta | h (1 - S)           (the BNTT seed: same step, detached)
       = h                                 (otherwise)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}
SAME_STEP_CODES = {"none": 0, "snn": 1, "detached": 2}


# -- primitives: torch's here; c_definition binds C's, triton_definition Triton's ------------------------
relu = torch.relu
exp = torch.exp
sqrt = torch.sqrt
#: ``start + weight * (end - start)`` as torch's CPU kernel rounds it (the C loops spell that rounding).
lerp = torch.lerp


def clamp(v, low, high):
    """``v`` limited to ``[low, high]``."""
    return v.clamp(low, high)


def wide(v):
    """``v`` in double precision."""
    return v.double()


def single(v):
    """``v`` in single precision (float32)."""
    return v.float()


def like(v, x):
    """``v`` rounded to ``x``'s precision."""
    return v.to(x.dtype)


def fire(v, theta):
    """1 where the membrane ``v`` is above the threshold, else 0, in ``v``'s dtype: ``H(v - theta)``."""
    return (v > theta).to(v.dtype)


# -- the variants ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """The static part of a leaky layer's update (hashable; selects a kernel specialisation).

    ``reset``: "subtract" | "zero" | "none"; ``delayed_reset``: snnTorch's reset computed from the
    previous step's membrane; ``same_step_reset``: "none" | "snn" (snnTorch ``reset_delay=False``)
    | "detached" (the BNTT seed / SpikingJelly neuron).
    """

    reset: str
    delayed_reset: bool
    same_step_reset: str

    @classmethod
    def of(cls, reset_mechanism: str, reset_delay: bool = True, detach_reset: bool = False) -> Variant:
        """The variant of a layer with snnTorch's ``reset_mechanism`` / ``reset_delay`` and our ``detach_reset``."""
        if reset_mechanism == "none":
            return cls("none", False, "none")
        if detach_reset:
            return cls(reset_mechanism, False, "detached")
        return cls(reset_mechanism, True, "none" if reset_delay else "snn")

    @classmethod
    def from_codes(cls, codes) -> Variant:
        """The variant of ``codes`` ``(RESET, DELAYED, SAME)`` (:attr:`codes`)."""
        RESET, DELAYED, SAME = codes
        reset = next(name for name, code in RESET_CODES.items() if code == RESET)
        same = next(name for name, code in SAME_STEP_CODES.items() if code == SAME)
        return cls(reset, bool(DELAYED), same)

    @property
    def codes(self) -> tuple[int, bool, int]:
        """``(RESET, DELAYED, SAME)``: the constants the definition's functions branch on."""
        return RESET_CODES[self.reset], self.delayed_reset, SAME_STEP_CODES[self.same_step_reset]

    @property
    def name(self) -> str:
        return f"{self.reset}-{'delayed' if self.delayed_reset else 'now'}-{self.same_step_reset}"

    def leaky_kwargs(self) -> dict:
        """The :class:`~bntt_snntorch.Leaky` arguments that give this variant."""
        if self.reset == "none":
            return dict(reset_mechanism="none", reset_delay=True, detach_reset=False)
        detached = self.same_step_reset == "detached"
        return dict(reset_mechanism=self.reset, reset_delay=self.same_step_reset != "snn", detach_reset=detached)


#: Every variant the kernels ship, in one vocabulary (used by the kernels, the AOT compile and the tests).
VARIANTS: tuple[Variant, ...] = (
    Variant("subtract", True, "none"),
    Variant("subtract", True, "snn"),
    Variant("zero", True, "none"),
    Variant("zero", True, "snn"),
    Variant("none", False, "none"),
    Variant("subtract", False, "detached"),
    Variant("zero", False, "detached"),
)


# -- the step ---------------------------------------------------------------------------------------
def charge(x, m_prev, r, beta, theta, RESET, DELAYED):
    """``h``: the membrane after integrating input ``x`` into ``m_prev`` (``r``: the previous step's reset)."""
    if DELAYED:
        if RESET == 0:
            return beta * m_prev + x - r * theta
        return beta * ((1.0 - r) * m_prev) + x
    return beta * m_prev + x


def membrane_after(h, fired, r, theta, RESET, SAME):
    """The membrane after this step's reset, from ``h``, this step's spike ``fired`` (0/1) and ``r``."""
    if SAME == 1:
        if RESET == 0:
            return h - (fired - r) * theta
        return h - (fired - r) * h
    if SAME == 2:
        if RESET == 0:
            return h - fired * theta
        return h * (1.0 - fired)
    return h


def previous_reset(m_prev, theta, DELAYED, SAME):
    """``r = H(m_prev - theta)`` for the variants that use it (a delayed or snnTorch same-step reset), else 0."""
    r = 0.0
    if DELAYED or SAME == 1:
        r = fire(m_prev, theta)
    return r


def forward_step(x, m_prev, beta, theta, g, RESET, DELAYED, SAME):
    """One step without autograd: ``(h, m, spk)`` with ``spk = g * H(h - theta)``."""
    r = previous_reset(m_prev, theta, DELAYED, SAME)
    h = charge(x, m_prev, r, beta, theta, RESET, DELAYED)
    fired = fire(h, theta)
    return h, membrane_after(h, fired, r, theta, RESET, SAME), fired * g


# -- its local derivatives ------------------------------------------------------------------------------
def membrane_backward(delta_m, h, fired, r, slope, theta, RESET, SAME):
    """``dL/dm' * dm'/dh`` (``slope``: the surrogate derivative at ``h - theta``)."""
    if SAME == 1:
        if RESET == 0:
            return delta_m * (1.0 - theta * slope)
        return delta_m * ((1.0 - fired + r) - h * slope)
    if SAME == 2:
        if RESET == 1:
            return delta_m * (1.0 - fired)
    return delta_m


def threshold_terms(fire_grad, delta_m, delta_h, slope, fired, r, h, theta, RESET, DELAYED, SAME):
    """This step's contribution to ``dL/dtheta``, per element: the spike's, the same-step reset's, the
    delayed reset's (``fire_grad = dL/dspk * g * slope``)."""
    d = -fire_grad
    if SAME == 1:
        if RESET == 0:
            d = d + delta_m * (theta * slope - (fired - r))
        else:
            d = d + delta_m * h * slope
    if SAME == 2:
        if RESET == 0:
            d = d - delta_m * fired
    if DELAYED:
        if RESET == 0:
            d = d - delta_h * r
    return d


def carry_back(delta_h, r, beta, RESET, DELAYED):
    """``dL/dh * dh/dm_prev``: what step t passes back to the membrane of step t-1."""
    if DELAYED:
        if RESET == 1:
            return delta_h * ((1.0 - r) * beta)
    return delta_h * beta


def leak_terms(delta_h, r, m_prev, RESET, DELAYED):
    """This step's contribution to ``dL/dbeta`` (of the clamped beta), per element."""
    if DELAYED:
        if RESET == 1:
            return delta_h * ((1.0 - r) * m_prev)
    return delta_h * m_prev


def fired_again(h, theta, SAME):
    """This step's spike (0/1) where the backward of a same-step reset needs it, else 0."""
    fired = 0.0
    if SAME != 0:
        fired = fire(h, theta)
    return fired


def fire_gradient(grad_spk, g, slope):
    """``dL/dh`` through the spike: ``dL/dspk * g * slope``."""
    return grad_spk * g * slope


def backward_step(grad_spk, delta_m, h, m_prev, beta, theta, g, slope, RESET, DELAYED, SAME):
    """One reverse step: ``delta_m = dL/dm'`` (the output gradient of the membrane plus the carry from
    step t+1), ``grad_spk = dL/dspk``. Returns ``(dL/dh, carry to step t-1, beta term, theta term)``;
    ``dL/dh`` is also ``dL/dx``. (The eager torch scan calls the same pieces, the leak and threshold
    terms only where a gradient is wanted.)"""
    r = previous_reset(m_prev, theta, DELAYED, SAME)
    fired = fired_again(h, theta, SAME)
    fire_grad = fire_gradient(grad_spk, g, slope)
    delta_h = membrane_backward(delta_m, h, fired, r, slope, theta, RESET, SAME) + fire_grad
    d_theta = threshold_terms(fire_grad, delta_m, delta_h, slope, fired, r, h, theta, RESET, DELAYED, SAME)
    carry = carry_back(delta_h, r, beta, RESET, DELAYED)
    return delta_h, carry, leak_terms(delta_h, r, m_prev, RESET, DELAYED), d_theta


# -- the surrogates' derivatives (``z = h - theta``; two parameters a, b each) ---------------------------
def triangle(z, a, b):
    """The BNTT seed's: ``a / b * max(0, 1 - |z| / b)`` (a: scale, b: width)."""
    return a / b * relu(1.0 - abs(z) / b)


def atan(z, a, b):
    """snnTorch's default: ``a / 2 / (1 + (pi / 2 * a * z) ** 2)`` (a: alpha)."""
    u = 1.5707963267948966 * a * z
    return a / 2.0 / (1.0 + u * u)


def fast_sigmoid(z, a, b):
    """``1 / (a |z| + 1) ** 2`` (a: slope)."""
    d = a * abs(z) + 1.0
    return 1.0 / (d * d)


def sigmoid(z, a, b):
    """``a * s * (1 - s)`` with ``s = 1 / (1 + exp(-a z))`` (a: slope)."""
    s = 1.0 / (1.0 + exp(-a * z))
    return a * s * (1.0 - s)


def straight_through(z, a, b):
    """1 everywhere."""
    return z * 0.0 + 1.0


#: The surrogates, in the order of their code ``SURR`` (:func:`surrogate_derivative`).
SURROGATES = (triangle, atan, fast_sigmoid, sigmoid, straight_through)


def surrogate_derivative(z, a, b, SURR):
    """The derivative of surrogate number ``SURR`` of :data:`SURROGATES` at ``z``."""
    if SURR == 0:
        return triangle(z, a, b)
    if SURR == 1:
        return atan(z, a, b)
    if SURR == 2:
        return fast_sigmoid(z, a, b)
    if SURR == 3:
        return sigmoid(z, a, b)
    return straight_through(z, a, b)


# -- the leak's clamp ------------------------------------------------------------------------------
def clamp_leak(beta):
    """The leak the neuron uses: ``beta`` clamped to ``[0, 1]``."""
    return clamp(beta, 0.0, 1.0)


def leak_gradient_mask(beta):
    """The derivative of :func:`clamp_leak`: 1 where ``0 <= beta <= 1``, else 0."""
    return (1.0 - fire(-beta, 0.0)) * (1.0 - fire(beta, 1.0))


# -- BNTT's statistics (per step and channel, over the batch and the spatial positions) -------------------
def batch_mean(total, count):
    """A channel's batch mean from the sum ``total`` of its ``count`` values (summed in double where the
    backend keeps a double sum), in single precision."""
    return single(total / count)


def squared_deviation(x, mean):
    """``(x - mean)^2``: summed over a channel, the rounded mean's squared deviations (two passes, never
    ``E[x^2] - mean^2``)."""
    d = x - mean
    return d * d


def batch_variance(squares, count):
    """A channel's biased batch variance from the sum of its ``count`` squared deviations, in single precision."""
    return single(squares / count)


def unbiased_factor(count):
    """``count / (count - 1)`` for a channel of ``count`` values a step (computed on the host)."""
    return count / (count - 1.0)


def unbiased_variance(var, unbias):
    """The unbiased batch variance that batch norm's running variance takes: ``var * unbias``
    (:func:`unbiased_factor`, rounded to ``var``'s precision as torch rounds a scalar operand)."""
    return var * unbias


def running_update(running, batch, momentum):
    """Batch norm's running-statistics rule: ``running`` moved toward the ``batch`` statistic by ``momentum``."""
    return lerp(running, batch, momentum)


# -- TAB's prefix statistics (steps 0..t merged one step at a time: one pass over T) ---------------------
def merged_mean(mean_a, count_a, mean_b, count_b):
    """The mean of two groups of values from their means and counts (Chan et al.'s pairwise update):
    TAB's prefix mean after step ``t``, from the prefix's (``a``: steps ``0..t-1``) and step ``t``'s (``b``)."""
    return mean_a + (mean_b - mean_a) * (count_b / (count_a + count_b))


def merged_squares(squares_a, mean_a, count_a, squares_b, mean_b, count_b):
    """The summed squared deviations of two groups about their joint mean (Chan et al.): TAB's prefix
    sum of squares from the prefix's and step ``t``'s, each about its own mean."""
    d = mean_b - mean_a
    return squares_a + squares_b + d * d * (count_a * count_b / (count_a + count_b))


def prefix_gradient_terms(d_mean, d_var, mean, counts):
    """TAB's backward through the prefix statistics, per step ``s`` and channel: ``dL/dx_s = k_s * dy_s + A_s +
    B_s * x_s`` with ``B_s = sum_{t >= s} 2 dL/dvar_t / N_t`` and ``A_s = sum_{t >= s} (dL/dmean_t - 2 dL/dvar_t
    mean_t) / N_t`` (``N_t``: the prefix's count, ``counts`` ``(T, 1)``; the biased prefix variance's derivative
    in ``x_s`` is ``2 (x_s - mean_t) / N_t``). Returns ``(A, B)``, each ``(T, C)``, the suffix sums over t."""
    b = 2.0 * d_var / counts
    a = d_mean / counts - b * mean
    return a.flip(0).cumsum(0).flip(0), b.flip(0).cumsum(0).flip(0)


# -- BNTT's normalisation (the fused block: current = k * x + shift per step and channel) -------------
def inverse_std(var, eps):
    """``1 / sqrt(var + eps)`` in double, rounded to ``var``'s precision, as batch norm's CPU kernel rounds
    it (so that :func:`normalise` with :func:`coefficients` equals ``torch.batch_norm`` bit for bit)."""
    return like(1.0 / sqrt(wide(var) + eps), var)


def coefficients(mean, rstd, gamma, scale):
    """``(k, shift)``: BNTT with the block's input ``scale`` folded in, ``k = rstd * gamma * scale`` (``gamma``
    1 for ``affine=False``) and ``shift = -mean * k``."""
    k = rstd * (gamma * scale)
    return k, -mean * k


def normalise(x, k, shift):
    """``k * x + shift``: BNTT with ``k = gamma * s / sqrt(var + eps)`` and ``shift = -mean * k``."""
    return x * k + shift


def current(x, k, shift, ROUND):
    """The neuron's input: :func:`normalise` of ``x`` in the coefficients' precision; ``ROUND``: rounded to ``x``'s
    (half) precision on the way, as batch norm's output is under autocast."""
    cur = normalise(like(x, k), k, shift)
    if ROUND:
        cur = like(like(cur, x), k)
    return cur


def centred_gradient(dy, x, mean):
    """``dy * (x - mean)``: summed over a channel, what batch norm's backward needs of ``dy * xhat``."""
    return dy * (x - mean)


def gradient_moments(sum_dy, sum_centred, rstd, count):
    """``(sum(dy * xhat), mean(dy), mean(dy * xhat))`` of a channel from ``sum(dy)`` and ``sum(dy * (x - mean))``
    over its ``count`` values (summed in double where the backend keeps double sums), in ``rstd``'s precision."""
    sum_dy_xhat = like(sum_centred, rstd) * rstd
    return sum_dy_xhat, like(sum_dy / count, rstd), like(wide(sum_dy_xhat) / count, rstd)


def normalise_input_grad(dy, x, k, mean, rstd, mean_dy, mean_dy_xhat, TRAINING):
    """``dL/dx`` of batch norm from ``dy = dL/dcurrent`` and the channel means of ``dy`` and ``dy * xhat``
    (``xhat = (x - mean) * rstd``); the statistics' own dependence on ``x`` only in training."""
    if TRAINING:
        return k * (dy - mean_dy - (x - mean) * rstd * mean_dy_xhat)
    return k * dy


#: The functions the C and Triton backends build from this source (in this order: callees first).
DEFINITIONS = (
    fire,
    charge,
    membrane_after,
    previous_reset,
    forward_step,
    fired_again,
    fire_gradient,
    membrane_backward,
    threshold_terms,
    carry_back,
    leak_terms,
    backward_step,
    *SURROGATES,
    surrogate_derivative,
    clamp_leak,
    leak_gradient_mask,
    batch_mean,
    squared_deviation,
    batch_variance,
    unbiased_factor,
    unbiased_variance,
    running_update,
    inverse_std,
    coefficients,
    normalise,
    current,
    centred_gradient,
    gradient_moments,
    normalise_input_grad,
)
