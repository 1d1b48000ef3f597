"""A checkpoint written by release 0.1.0 (tests/data, digits, T=4, 2 epochs) keeps loading and evaluates
to the test accuracy it had then."""

import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bntt_snntorch import encoding
from bntt_snntorch.training import load_run
from bntt_snntorch.training.loop import LoopOptions, evaluate
from bntt_snntorch.training.runs import run_datasets

DATA = Path(__file__).resolve().parent / "data"


def test_a_0_1_checkpoint_loads_and_evaluates_to_its_accuracy():
    recorded = json.loads((DATA / "digits-tiny-v0.1.0.json").read_text())
    model, cfg, _ = load_run(DATA / "digits-tiny-v0.1.0.pt")
    assert (cfg.arch, cfg.num_steps, cfg.neuron, cfg.norm) == ("bntt_digits", 4, "bntt_leaky", "bntt")
    _, test_set, _ = run_datasets(cfg, progress=False)
    loader = DataLoader(test_set, batch_size=cfg.batch_size, shuffle=False)
    gen = torch.Generator().manual_seed(cfg.eval_seed)  # the run's own evaluation draws
    encode = lambda x: encoding.encode(x, cfg.num_steps, cfg.encode, gen)  # noqa: E731
    result = evaluate(model, loader, encode, LoopOptions(progress=False))
    # equal up to one test image: another CPU's convolution kernels may round a membrane that sits on the threshold
    assert abs(result.accuracy - recorded["test_acc"]) <= 1 / len(test_set) + 1e-12
    assert abs(result.loss - recorded["test_loss"]) < 1e-3
