"""labelzoo.optim: the Lookahead wrapper follows the paper's update, works with schedulers and checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labelzoo.optim import ClipGradNorm, Lookahead, encoder_decoder_param_groups


def _sgd_pair(k: int = 3, alpha: float = 0.5, lr: float = 0.1):
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    return w, Lookahead(torch.optim.SGD([w], lr=lr), k=k, alpha=alpha)


def _step(w: nn.Parameter, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad()
    (0.5 * (w**2).sum()).backward()  # gradient = w, so SGD multiplies w by (1 - lr)
    opt.step()


def test_k_fast_steps_then_one_step_back_to_the_interpolation():
    w, opt = _sgd_pair(k=3, alpha=0.5, lr=0.1)
    start = w.detach().clone()
    for _ in range(2):
        _step(w, opt)
    assert torch.allclose(w, start * 0.9**2), "between synchronisations the inner optimiser runs alone"
    _step(w, opt)
    fast = start * 0.9**3
    slow = start + 0.5 * (fast - start)  # phi_1 = phi_0 + alpha (theta_k - phi_0), phi_0 = theta_0
    assert torch.allclose(w, slow)
    assert torch.allclose(opt.slow_weights[0], slow)
    for _ in range(3):
        _step(w, opt)
    assert torch.allclose(w, slow + 0.5 * (slow * 0.9**3 - slow))


def test_alpha_one_is_the_inner_optimiser():
    w, opt = _sgd_pair(k=2, alpha=1.0)
    ref = nn.Parameter(w.detach().clone())
    ref_opt = torch.optim.SGD([ref], lr=0.1)
    for _ in range(5):
        _step(w, opt)
        _step(ref, ref_opt)
    assert torch.allclose(w, ref)


def test_schedulers_and_param_groups_act_on_the_inner_optimiser():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    groups = [{"params": net[0].parameters(), "lr": 5e-4}, {"params": net[1].parameters(), "lr": 5e-3}]
    opt = Lookahead(torch.optim.RAdam(groups, lr=5e-3), k=5, alpha=0.5)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.25, patience=0)
    for _ in range(3):
        opt.zero_grad()
        net(torch.ones(2, 3)).sum().backward()
        opt.step()
        sched.step(0.5)  # no improvement after the first value
    inner = [g["lr"] for g in opt.optimizer.param_groups]
    assert inner == pytest.approx([5e-4 * 0.25**2, 5e-3 * 0.25**2])
    assert [g["lr"] for g in opt.param_groups] == inner


def test_state_dict_round_trip_restores_slow_weights_and_counter():
    w, opt = _sgd_pair(k=4)
    for _ in range(6):
        _step(w, opt)
    state = opt.state_dict()
    assert state["lookahead"]["steps"] == 6
    w2 = nn.Parameter(w.detach().clone())
    opt2 = Lookahead(torch.optim.SGD([w2], lr=0.1), k=4)
    opt2.load_state_dict(state)
    assert opt2.lookahead_steps == 6 and torch.allclose(opt2.slow_weights[0], opt.slow_weights[0])
    for _ in range(2):
        _step(w, opt)
        _step(w2, opt2)
    assert torch.allclose(w, w2), "the restored optimiser synchronises at the same step with the same slow weights"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"k": 0}, "k"), ({"k": 2.5}, "k"), ({"alpha": 0.0}, "alpha"), ({"alpha": 1.5}, "alpha")],
)
def test_bad_arguments(kwargs, match):
    w = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=match):
        Lookahead(torch.optim.SGD([w], lr=0.1), **kwargs)
    with pytest.raises(ValueError, match="Optimizer"):
        Lookahead([w])  # type: ignore[arg-type]


def test_encoder_decoder_param_groups_split_the_unetplusplus_encoder():
    from labelzoo.networks import UNetPlusPlus

    net = UNetPlusPlus(2, 1, 2, features=(4, 4, 8, 8, 8, 4))
    groups = encoder_decoder_param_groups(net, 5e-3, 0.1)
    assert [g["name"] for g in groups] == ["encoder", "decoder"]
    assert groups[0]["lr"] == pytest.approx(5e-4) and groups[1]["lr"] == pytest.approx(5e-3)
    n_params = sum(1 for _ in net.parameters())
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == n_params
    encoder_ids = {id(p) for p in net.net.conv_4_0.parameters()}
    assert encoder_ids <= {id(p) for p in groups[0]["params"]}
    with pytest.raises(ValueError, match="not parameters"):
        encoder_decoder_param_groups(net, 1e-3, encoder_names=["nope.weight"])
    with pytest.raises(ValueError, match="positive"):
        encoder_decoder_param_groups(net, 0.0)


def _one_sgd_iteration(handlers: list, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One iteration of a real MONAI SupervisedTrainer (plain SGD, lr 1) on a linear layer whose gradient is
    ``scale`` times a known vector; returns (weight before, weight after)."""
    from monai.engines import SupervisedTrainer

    net = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    before = net.weight.detach().clone()
    x = torch.tensor([[3.0, 4.0, 0.0]]) * scale  # d(sum(w.x))/dw = x: norm 5 * scale
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=[{"image": x,
                                "label": torch.zeros(1, 1)}], network=net,
                                optimizer=torch.optim.SGD(net.parameters(), lr=1.0),
                                loss_function=lambda pred, _y: pred.sum(), train_handlers=handlers)
    trainer.run()
    return before, net.weight.detach().clone()


def test_clip_grad_norm_clips_before_the_optimiser_step_of_a_monai_trainer():
    clip = ClipGradNorm(max_norm=12)
    before, after = _one_sgd_iteration([clip], scale=10.0)  # gradient (30, 40, 0): norm 50 > 12
    assert clip.last_norm == pytest.approx(50.0)
    assert torch.allclose(before - after, torch.tensor([[30.0, 40.0, 0.0]]) * 12 / 50, atol=1e-4)
    clip = ClipGradNorm(max_norm=12)
    before, after = _one_sgd_iteration([clip], scale=1.0)  # norm 5 <= 12: the step is unchanged
    assert clip.last_norm == pytest.approx(5.0)
    assert torch.allclose(before - after, torch.tensor([[3.0, 4.0, 0.0]]), atol=1e-5)
    before, after = _one_sgd_iteration([], scale=10.0)  # without the handler the full gradient is applied
    assert torch.allclose(before - after, torch.tensor([[30.0, 40.0, 0.0]]), atol=1e-4)


@pytest.mark.parametrize("bad", [0, -1.0])
def test_clip_grad_norm_rejects_a_non_positive_norm(bad):
    with pytest.raises(ValueError, match="max_norm"):
        ClipGradNorm(max_norm=bad)
