"""The full-strength fine-tuning protocol: the choice made on the support, the edge flag, divergence, L-BFGS and
the crossover."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn_kit.evaluation.finetune_protocol import (
    FULL_STRENGTH_GRID,
    FinetuneGrid,
    crossover,
    decade_grid,
    full_strength_curve,
)


class Scale(nn.Module):
    """``y = w * x``: one weight, so the best learning rate of each step count is known by hand."""

    def __init__(self, w: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x):
        return self.w * x


def mse(model, batch):
    return F.mse_loss(model(batch[0]), batch[1])


def as_image(model, query):
    """Render a vector model's 64 outputs as one 8x8 picture in [0, 1]."""
    return model(query[0]).sigmoid().reshape(1, 1, 8, 8), query[1].sigmoid().reshape(1, 1, 8, 8)


def pairs(gain: float, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.linspace(0.1, 0.9, n * 64).reshape(n, 1, 8, 8)
    return x, (gain * x).clamp(0, 1)


def test_decade_grid_and_full_grid():
    assert decade_grid(1e-3, 1.0) == (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
    assert FULL_STRENGTH_GRID.adam[0] == 1e-5 and FULL_STRENGTH_GRID.adam[-1] == 1.0
    assert FULL_STRENGTH_GRID.sgd[0] == 1e-4 and FULL_STRENGTH_GRID.sgd[-1] == 10.0
    assert FULL_STRENGTH_GRID.lbfgs == (1.0,)


def test_grid_refuses_bad_values():
    with pytest.raises(ValueError, match="ascending"):
        FinetuneGrid(adam=(1e-2, 1e-3))
    with pytest.raises(ValueError, match="all empty"):
        FinetuneGrid()
    with pytest.raises(ValueError, match="adam learning rate"):
        FinetuneGrid(adam=(-1.0,))
    with pytest.raises(TypeError, match="tuple"):
        FinetuneGrid(sgd=[0.1])


def test_support_decides_not_query():
    # the support asks for gain 0.5, the query for gain 1: the choice must fit the support
    support, query = pairs(0.5), pairs(1.0)
    grid = FinetuneGrid(sgd=(1e-3, 0.3, 1.0))
    curve = full_strength_curve(Scale(1.0), support, query, mse, (0, 1, 5), grid=grid)
    # starting at w = 1, a tiny rate keeps the weight that suits the query; the support picks a large one
    assert curve["lr"][5] in (0.3, 1.0) and curve["optimizer"][5] == "sgd"
    tiny = full_strength_curve(Scale(1.0), support, query, mse, (5,), grid=FinetuneGrid(sgd=(1e-3,)))
    assert curve["psnr"][5] < tiny["psnr"][5]  # the query would have preferred the tiny rate
    assert curve["support_loss"][5] < tiny["support_loss"][5]
    assert curve["optimizer"][0] is None and curve["lr"][0] is None and curve["grid_edge"][0] is False


def test_edge_flag():
    support = pairs(0.5)
    # every rate is too small for 2 steps from w = 0: the largest wins and is flagged
    low = full_strength_curve(Scale(), support, support, mse, (2,), grid=FinetuneGrid(sgd=(1e-4, 1e-3, 1e-2)))
    assert low["lr"][2] == 1e-2 and low["grid_edge"][2] is True
    assert low["per_optimizer"][2] == {"sgd": {"lr": 1e-2, "support_loss": low["support_loss"][2], "grid_edge": True}}
    wide = full_strength_curve(Scale(), support, support, mse, (2,), grid=FinetuneGrid(sgd=decade_grid(1e-4, 30)))
    assert wide["grid_edge"][2] is False and 1e-4 < wide["lr"][2] < 30


def test_divergence_is_excluded_not_fatal():
    support = pairs(0.5)
    grid = FinetuneGrid(sgd=(0.3, 1e6))  # 1e6 overflows within a few steps
    curve = full_strength_curve(Scale(), support, support, mse, (1, 20), grid=grid)
    assert curve["lr"][20] == 0.3 and math.isfinite(curve["psnr"][20])
    everything_diverges = full_strength_curve(Scale(), support, support, mse, (0, 20), grid=FinetuneGrid(sgd=(1e30,)))
    assert math.isnan(everything_diverges["psnr"][20]) and everything_diverges["optimizer"][20] is None
    assert math.isfinite(everything_diverges["psnr"][0])


def test_lbfgs_reduces_a_quadratic():
    torch.manual_seed(0)
    a = torch.randn(64, 8)
    target = torch.randn(64, 1)
    model = nn.Linear(8, 1, bias=False)

    def quadratic(m, batch):
        return ((m(batch[0]) - batch[1]) ** 2).mean()

    before = float(quadratic(model, (a, target)).detach())
    curve = full_strength_curve(model, (a, target), (a, target), quadratic, (0, 1, 10),
                                grid=FinetuneGrid(lbfgs=(1.0,)),
                                render=as_image)
    assert curve["support_loss"][0] == pytest.approx(before)
    assert curve["support_loss"][1] < before
    # the least-squares minimum of a well-posed 8-parameter problem is reached in far fewer than 10 steps
    best = float(quadratic(lambda x: x @ torch.linalg.lstsq(a, target).solution, (a, target)))
    assert curve["support_loss"][10] == pytest.approx(best, abs=1e-4)
    assert curve["optimizer"][10] == "lbfgs" and curve["grid_edge"][10] is False
    assert curve["evaluations"][10] >= 10
    assert float(quadratic(model, (a, target)).detach()) == pytest.approx(before)  # the model itself is unchanged


def test_model_with_transposed_weight_runs_under_lbfgs():
    model = nn.Linear(4, 4)
    model.weight = nn.Parameter(torch.randn(4, 4).t())  # a non-contiguous parameter (and gradient)
    x = torch.rand(16, 4)
    curve = full_strength_curve(model, (x, x), (x, x), mse, (2,), grid=FinetuneGrid(lbfgs=(1.0,)),
                                render=as_image)
    assert math.isfinite(curve["support_loss"][2])


def test_crossover_on_hand_made_numbers():
    meta = {1: [30, 31, 32, 33], 5: [34, 35, 36, 37], 50: [35, 35, 36, 36]}
    joint = {1: [20, 21, 22, 23], 5: [33.9, 35.1, 35.9, 37.1], 50: [37, 37.2, 38, 38.1]}
    scratch = {1: [10, 11, 12, 13], 5: [10, 11, 12, 13], 50: [20, 21, 22, 23]}
    result = crossover(meta, {"joint": joint, "scratch": scratch})
    assert result.step == 5 and result.verdicts[5][0] == "joint"
    assert result.verdicts[5][1].verdict == "is within noise of"
    assert result.last_step == 50 and result.winner == "joint"
    assert "crossover at 5 steps (joint)" in result.line()
    never = crossover({1: [5, 6, 7], 2: [6, 7, 8]}, {"joint": {1: [1, 2, 3], 2: [1, 2, 3.5]}})
    assert never.step is None and never.winner == "meta-init"
    # losses: lower is better, so the meta-init's higher values lose
    losses = crossover({2: [1.0, 1.1, 1.2]}, {"joint": {2: [0.5, 0.55, 0.6]}}, higher_is_better=False)
    assert losses.step == 2 and losses.winner == "joint"
    with pytest.raises(ValueError, match="share no step count"):
        crossover({1: [1, 2]}, {"joint": {2: [1, 2]}})


class TinyConv(nn.Module):
    """A small two-layer conv net: the batched pass must vmap its convolutions over the copies."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        return x + self.b(torch.tanh(self.a(x)))


def conv_pairs(seed: int, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, 1, 12, 12, generator=g)
    return (0.6 * clean + 0.2).clamp(0, 1), clean


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_batched_runs_match_finetune_and_torch_optim(optimizer):
    from metalearn_kit.evaluation.batched_finetune import batched_runs
    from metalearn_kit.meta import finetune

    torch.manual_seed(0)
    model, support, lrs, steps = TinyConv(), conv_pairs(0), (1e-3, 1e-2, 0.1), (0, 1, 7)
    records = batched_runs(model, support, mse, steps, optimizer, lrs)
    # the kit's Adam adds eps to sqrt(v) before the bias correction (higher's form), torch.optim.Adam after it:
    # the same rule but for that, so torch.optim.Adam is matched only to the size of that difference
    torch_tol = 1e-6 if optimizer == "sgd" else 1e-4
    for lr, record in zip(lrs, records, strict=True):
        twin = TinyConv()
        twin.load_state_dict(model.state_dict())
        opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer](twin.parameters(), lr=lr)
        for k in range(max(steps) + 1):
            if k in steps:
                kit = finetune(model, support, mse, k, lr, optimizer)
                assert record[k]["evaluations"] == k
                assert record[k]["loss"] == pytest.approx(float(mse(kit, support).detach()), rel=1e-6, abs=1e-7)
                for name, weight in twin.state_dict().items():
                    torch.testing.assert_close(record[k]["tensors"][name], kit.tensors[name], rtol=1e-6, atol=1e-6)
                    torch.testing.assert_close(record[k]["tensors"][name], weight, rtol=torch_tol, atol=torch_tol)
            opt.zero_grad()
            mse(twin, support).backward()
            opt.step()


def test_batched_runs_drop_diverged_copies():
    from metalearn_kit.evaluation.batched_finetune import batched_runs

    records = batched_runs(Scale(), pairs(0.5), mse, (0, 1, 20), "sgd", (0.3, 1e6, 1e30))
    assert sorted(records[0]) == [0, 1, 20] and math.isfinite(records[0][20]["loss"])
    assert 20 not in records[1] and 20 not in records[2] and 0 in records[2]


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_search_matches_one_run_at_a_time(monkeypatch, seed):
    import metalearn_kit.evaluation.finetune_protocol as protocol

    torch.manual_seed(seed)
    model, support, query = TinyConv(), conv_pairs(seed), conv_pairs(seed + 10)
    grid = FinetuneGrid(adam=decade_grid(1e-4, 1.0), sgd=decade_grid(1e-3, 30.0), lbfgs=(1.0,))
    steps = (0, 1, 2, 5, 10, 20)
    batched = full_strength_curve(model, support, query, mse, steps, grid=grid, grad_clip=None if seed else 5.0)
    monkeypatch.setattr(protocol, "_grid_runs", protocol._reference_grid_runs)
    reference = full_strength_curve(model, support, query, mse, steps, grid=grid, grad_clip=None if seed else 5.0)
    for k in steps:
        assert (batched["optimizer"][k], batched["lr"][k]) == (reference["optimizer"][k], reference["lr"][k])
        assert batched["psnr"][k] == pytest.approx(reference["psnr"][k], abs=1e-4)
        assert batched["support_loss"][k] == pytest.approx(reference["support_loss"][k], rel=1e-5)
        assert batched["grid_edge"][k] == reference["grid_edge"][k]
        if k:
            assert batched["per_optimizer"][k].keys() == reference["per_optimizer"][k].keys()
            for name, choice in batched["per_optimizer"][k].items():
                assert choice["lr"] == reference["per_optimizer"][k][name]["lr"]
