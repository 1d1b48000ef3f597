"""TAB (temporal accumulated batch norm) against the paper's definition: the authors' layer re-normalises
the prefix x[0..t] with step t's own BatchNorm3d at every step (written out here, time-major). Float64,
fresh random inputs and parameters; values, input and parameter gradients, running statistics and eval, in
both step modes. Tolerances: 1e-10 in float64 (the prefix moments are merged, not recomputed), 1e-5 in float32."""

import pytest
import torch
from torch import nn

import bntt_snntorch as bs
from bntt_snntorch.temporal_norm import create_norm

from .helpers import assert_close

EPS, MOMENTUM = 1e-5, 0.1


class PaperTAB(nn.Module):
    """The authors' ``TAB_Layer`` (``HaiyanJiang/SNN-TAB``, ``models.py``) on a time-major ``(T, B, C, ...)``
    sequence: step t's BatchNorm over the prefix, its step-t slice, times ``p_t^2``."""

    def __init__(self, channels: int, steps: int, dims: int):
        super().__init__()
        norm = nn.BatchNorm3d if dims == 2 else nn.BatchNorm1d
        self.bn_list = nn.ModuleList([norm(channels, EPS, MOMENTUM) for _ in range(steps)])
        self.p = nn.Parameter(torch.ones(steps))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        out = []
        for t in range(x_seq.shape[0]):
            prefix = x_seq[: t + 1].movedim(0, 2)  # (B, C, t+1, ...): the steps next to the channels
            if prefix.dim() == 4:  # (B, C, t+1, L): BatchNorm1d takes (N, C, L); fold the steps into L
                prefix = prefix.flatten(2)
            y = self.bn_list[t](prefix)
            out.append(y.unflatten(2, (t + 1, -1))[:, :, t] if x_seq.dim() == 4 else y[:, :, t])
        return torch.stack(out) * (self.p**2).view(-1, *[1] * (x_seq.dim() - 1))


def _pair(dims: int, steps: int = 5, channels: int = 3, seed: int = 0, dtype=torch.float64):
    """Ours and the paper's TAB with the same random affine, p and running statistics."""
    torch.manual_seed(seed)
    ours = create_norm("tab", channels, steps, dims).to(dtype)
    paper = PaperTAB(channels, steps, dims).to(dtype)
    with torch.no_grad():
        ours.weight.copy_(torch.rand(steps, channels) + 0.5)
        ours.bias.copy_(torch.randn(steps, channels))
        ours.p.copy_(torch.rand(steps) + 0.5)
        ours.running_var.copy_(torch.rand(steps, channels) + 0.5)
        ours.running_mean.copy_(torch.randn(steps, channels))
        paper.p.copy_(ours.p)
        for t, bn in enumerate(paper.bn_list):
            bn.weight.copy_(ours.weight[t])
            bn.bias.copy_(ours.bias[t])
            bn.running_mean.copy_(ours.running_mean[t])
            bn.running_var.copy_(ours.running_var[t])
    return ours, paper


SHAPES = {2: (5, 4, 3, 6, 5), 1: (5, 4, 3)}  # (T, B, C, H, W) and (T, B, C)


def _run(layer, x_seq, mode: str):
    if mode == "m" or isinstance(layer, PaperTAB):
        return layer(x_seq)
    bs.set_step_mode(layer, "s")
    bs.utils.reset(layer)
    return torch.stack([layer(x) for x in x_seq])


@pytest.mark.parametrize("dims", [2, 1])
@pytest.mark.parametrize("mode", ["m", "s"])
def test_tab_equals_the_papers_definition_in_float64(dims, mode):
    ours, paper = _pair(dims)
    for _ in range(2):  # two training batches: the running statistics move twice
        x_seq = torch.randn(SHAPES[dims], dtype=torch.float64) * 2 + 0.5
        x_ours, x_paper = x_seq.clone().requires_grad_(), x_seq.clone().requires_grad_()
        y_ours, y_paper = _run(ours, x_ours, mode), _run(paper, x_paper, mode)
        assert_close(y_ours, y_paper, atol=1e-10, rtol=1e-10)
        grad = torch.randn_like(y_paper)
        (y_ours * grad).sum().backward()
        (y_paper * grad).sum().backward()
        assert_close(x_ours.grad, x_paper.grad, atol=1e-10, rtol=1e-10)
    assert_close(ours.p.grad, paper.p.grad, atol=1e-10, rtol=1e-10)
    for t, bn in enumerate(paper.bn_list):
        assert_close(ours.weight.grad[t], bn.weight.grad, atol=1e-10, rtol=1e-10)
        assert_close(ours.bias.grad[t], bn.bias.grad, atol=1e-10, rtol=1e-10)
        assert_close(ours.running_mean[t], bn.running_mean, atol=1e-12, rtol=1e-12)
        assert_close(ours.running_var[t], bn.running_var, atol=1e-12, rtol=1e-12)
    ours.eval(), paper.eval()
    x_seq = torch.randn(SHAPES[dims], dtype=torch.float64)
    assert_close(_run(ours, x_seq, mode), _run(paper, x_seq, mode), atol=1e-12, rtol=1e-12)


def test_tab_in_float32_within_the_usual_tolerance():
    ours, paper = _pair(2, dtype=torch.float32, seed=3)
    x_seq = (torch.randn(SHAPES[2]) * 3 + 1).requires_grad_()
    x_paper = x_seq.detach().clone().requires_grad_()
    assert_close(ours(x_seq), paper(x_paper), atol=1e-5, rtol=1e-5)
    ours(x_seq).sum().backward()
    paper(x_paper).sum().backward()
    assert_close(x_seq.grad, x_paper.grad, atol=1e-5, rtol=1e-5)


def test_tab_keeps_o_of_c_state_in_step_mode_and_restarts_at_step_0():
    ours, _ = _pair(2)
    bs.set_step_mode(ours, "s")
    x_seq = torch.randn(SHAPES[2], dtype=torch.float64)
    first = torch.stack([ours(x) for x in x_seq])
    prefix = ours._prefix
    assert prefix.mean.shape == prefix.squares.shape == (3,) and prefix.count == 5 * 4 * 6 * 5
    again = torch.stack([ours(x) for x in x_seq])  # the counter wrapped: a new sequence, a fresh prefix
    assert_close(again, first, atol=1e-6, rtol=1e-6)  # only the running statistics moved (training mode)
    with pytest.raises(ValueError, match=r"expected one step \(B, C, H, W\) with C=3, got shape \(4, 2, 6, 5\)"):
        ours(torch.randn(4, 2, 6, 5, dtype=torch.float64))


def test_tab_builds_the_bntt_vggs_and_trains_through_train_py(tmp_path):
    from bntt_snntorch.commands.train import get_args_parser, main

    model = bs.create_model("vgg9", num_steps=2, norm="tab")
    assert isinstance(model.features[0].norm, bs.TemporalAccumulatedBatchNorm2d)
    run = tmp_path / "run"
    flags = ["--norm", "tab", "--num_epochs", "1", "--max-batches", "2", "--num_steps", "4", "--no-progress"]
    main(get_args_parser().parse_args([*flags, "--output-dir", str(run)]))
    ckpt = torch.load(run / "last.pt", weights_only=False)
    assert ckpt["config"]["norm"] == "tab" and ckpt["model"]["features.0.norm.p"].shape == (4,)


def test_a_trained_tab_model_copies_pickles_and_exports_to_nir_exactly():
    """At inference TAB is a per-step affine map: the model exports as BNTT's does and reads back equal."""
    import copy
    import pickle

    pytest.importorskip("nir")
    torch.manual_seed(0)
    model = bs.create_model("bntt_digits", num_steps=4, norm="tab")
    x_seq = torch.rand(4, 8, 1, 8, 8)
    model(x_seq).sum().backward()  # a training step leaves each layer's prefix moments with their history
    model.eval()
    copy.deepcopy(model), pickle.loads(pickle.dumps(model))
    graph = bs.export_to_nir(model, x_seq[0])
    readout = model.classifier(model.features(x_seq))  # (T, B, classes), what the NIR graph computes
    assert torch.equal(bs.import_from_nir(graph)(x_seq), readout)
    folded = bs.import_from_nir(graph, use_metadata=False)(x_seq)  # NIR's own nodes: TAB folded per step
    assert folded.shape == readout.shape and (folded - readout).abs().max() < 1e-3
