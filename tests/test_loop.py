# SPDX-License-Identifier: Apache-2.0
"""The loop's parts: gradient accumulation, the batch stream across epochs and
resumes, and the loss watch that reads the device only when asked."""

import math
from types import SimpleNamespace

import pytest
import torch

from physicsnemo_climax.engine.loop import LossWatch, micro_batches, train_step
from physicsnemo_climax.engine.optim import Optimization
from physicsnemo_climax.engine.plan import RunPlan

ONE_RANK = SimpleNamespace(world_size=1, distributed=False, rank=0)


def net_and_optim(seed=0):
    """A small net with plain SGD (whose step, unlike Adam's, shows the gradient's scale)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    sgd = torch.optim.SGD(net.parameters(), lr=0.5)
    return net, Optimization(
        sgd, torch.optim.lr_scheduler.ConstantLR(sgd, 1.0), torch.amp.GradScaler("cpu", enabled=False)
    )


def mse(net, batch):
    return (net(batch["x"]) - batch["y"]).square().mean()


def test_accumulated_micro_batches_step_like_one_batch():
    torch.manual_seed(1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    whole, opt_whole = net_and_optim()
    parts, opt_parts = net_and_optim()
    cpu = torch.device("cpu")
    halves = [{"x": x[:4], "y": y[:4]}, {"x": x[4:], "y": y[4:]}]
    loss_whole = train_step(
        whole, [{"x": x, "y": y}], mse, opt_whole, RunPlan(), cpu, (0, 0, 0), 0.0, whole.parameters()
    )
    loss_parts = train_step(parts, halves, mse, opt_parts, RunPlan(), cpu, (0, 0, 0), 0.0, parts.parameters())
    untouched, _ = net_and_optim()
    assert not torch.allclose(untouched[0].weight, parts[0].weight)
    assert loss_parts.item() == pytest.approx(loss_whole.item(), rel=1e-6)  # the mean of the micro-batches
    for a, b in zip(whole.parameters(), parts.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert all(p.grad is None for p in parts.parameters())  # zeroed for the next step
    assert opt_parts.scheduler.last_epoch == 1


def test_micro_batches_cross_epochs_and_resume_mid_epoch():
    def epochs(e):
        return [f"{e}.{i}" for i in range(3)]

    stream = micro_batches(epochs)
    got = [next(stream) for _ in range(5)]
    assert [b for b, _ in got] == ["0.0", "0.1", "0.2", "1.0", "1.1"]
    assert [pos for _, pos in got] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)]
    resumed = micro_batches(epochs, *got[1][1])  # a run resumed after the second batch
    assert [next(resumed)[0] for _ in range(3)] == ["0.2", "1.0", "1.1"]
    at_end = micro_batches(epochs, 0, 3)  # a checkpoint at the very end of epoch 0
    assert next(at_end) == ("1.0", (1, 1))
    with pytest.raises(ValueError, match="epoch 0 has no batches"):
        next(micro_batches(lambda e: []))


def test_loss_watch_names_the_first_bad_step_and_means_the_window():
    watch = LossWatch(torch.device("cpu"), ONE_RANK, check_every=5, last_good=2)
    for step, value in zip(range(3, 6), [1.0, 3.0, 2.0]):
        watch.add(torch.tensor(value), step)
    watch.check("ckpt")  # all finite: nothing happens
    assert watch.mean() == pytest.approx(2.0)
    watch.add(torch.tensor(4.0), 6)
    watch.add(torch.tensor(math.nan), 7)
    watch.add(torch.tensor(math.inf), 8)  # a later bad step does not hide the first
    watch.last_good = 6
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 7; .*\(step 6\) is in ckpt"):
        watch.check("ckpt")
