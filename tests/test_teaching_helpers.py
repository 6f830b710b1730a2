"""The library helpers the notebooks teach with: the loop diagram, the paired verdict, the meta-step cost
measurements and the meta-learnable sparse coder (LISTA)."""

import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from metalearn_kit.evaluation import VERDICTS, paired_verdict
from metalearn_kit.evaluation.paired import t_quantile
from metalearn_kit.meta import MAML, autograd_saved_bytes, seconds_per_meta_step
from metalearn_kit.models import ConvRestorer, UnrolledSparseCoder, soft_threshold
from metalearn_kit.tasks.task import Task, stack_tasks
from metalearn_kit.viz import LOOP_DIAGRAM_LABELS, plot_meta_learning_loops

matplotlib.use("Agg")


def test_loop_diagram_draws_every_label():
    figure = plot_meta_learning_loops(inner_steps=4, tasks=2)
    texts = " ".join(t.get_text() for t in figure.axes[0].texts)
    for label in LOOP_DIAGRAM_LABELS:
        assert label in texts, label
    assert "4 steps" in texts and "task 2" in texts and "task 3" not in texts
    with pytest.raises(ValueError, match="tasks"):
        plot_meta_learning_loops(tasks=9)
    with pytest.raises(TypeError, match="inner_steps"):
        plot_meta_learning_loops(inner_steps=1.5)


def test_paired_verdict_beats_within_noise_and_losses():
    a = [10.0, 11.0, 12.0, 13.0]
    assert paired_verdict([x + 1.0 + 0.01 * i for i, x in enumerate(a)], a).verdict == "beats"
    assert paired_verdict(a, [x + 1.0 + 0.01 * i for i, x in enumerate(a)]).verdict == "is beaten by"
    noisy = paired_verdict([x + d for x, d in zip(a, (0.5, -0.4, 0.3, -0.5))], a)
    assert noisy.verdict == "is within noise of" and noisy.n == 4
    # a loss: lower is better, so a lower a "beats"
    assert paired_verdict([x - 1.0 - 0.01 * i for i, x in enumerate(a)], a, higher_is_better=False).verdict == "beats"
    result = paired_verdict([1.0, 2.0, 4.0], [0.0, 0.0, 0.0])
    assert math.isclose(result.mean, 7 / 3) and math.isclose(result.se, math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2
                                                                                   + (4 - 7 / 3) ** 2) / 2 / 3))
    assert result.verdict in VERDICTS and "(paired, 3 tasks)" in result.line("a", "b", "dB")


def test_the_default_verdict_is_the_paired_95_percent_interval():
    # t quantiles (97.5%): the benchmarks' intervals and the notebooks' verdicts use the same rule
    assert math.isclose(t_quantile(2), 4.3027, abs_tol=1e-3) and math.isclose(t_quantile(7), 2.3646, abs_tol=1e-3)
    assert 1.96 < t_quantile(1000) < 1.963
    # 3 tasks, mean difference 3 standard errors: beyond z = 2, inside the t interval (4.30 standard errors)
    diffs = [2.0, 3.0, 4.0]  # mean 3, se 1/sqrt(3)
    a, b = [10.0 + d for d in diffs], [10.0, 10.0, 10.0]
    close = paired_verdict([x - 3.0 + 3.0 * (1 / math.sqrt(3)) for x in a], b)  # mean exactly 3 se
    assert close.verdict == "is within noise of" and math.isclose(close.mean / close.se, 3.0)
    assert paired_verdict([x - 3.0 + 3.0 * (1 / math.sqrt(3)) for x in a], b, z=2.0).verdict == "beats"
    with pytest.raises(ValueError, match="df"):
        t_quantile(0)


def test_paired_verdict_rejects_bad_input():
    with pytest.raises(ValueError, match="same tasks"):
        paired_verdict([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        paired_verdict([1.0], [2.0])
    with pytest.raises(ValueError, match="finite"):
        paired_verdict([1.0, float("nan")], [1.0, 2.0])


def _denoising_batch(tasks=2, shots=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(tasks, 2 * shots, 1, size, size, generator=g)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    return stack_tasks([Task(support=(noisy[t, :shots], clean[t, :shots]), query=(noisy[t, shots:], clean[t, shots:]))
                            for t in range(tasks)])


def _mse(model, batch):
    degraded, clean = batch
    return F.mse_loss(model(degraded), clean)


def test_meta_step_cost_helpers():
    torch.manual_seed(0)
    model = ConvRestorer(width=4, depth=2)
    batch = _denoising_batch()
    seconds = seconds_per_meta_step(MAML(model, inner_lr=0.05, inner_steps=1), batch, _mse, repeats=1)
    assert seconds > 0
    one = autograd_saved_bytes(MAML(model, inner_lr=0.05, inner_steps=1, backend="higher"), batch, _mse)
    four = autograd_saved_bytes(MAML(model, inner_lr=0.05, inner_steps=4, backend="higher"), batch, _mse)
    assert four > 2 * one > 0, (one, four)
    with pytest.raises(TypeError, match="meta_loss"):
        seconds_per_meta_step(model, batch, _mse)
    with pytest.raises(ValueError, match="repeats"):
        seconds_per_meta_step(MAML(model, inner_lr=0.05), batch, _mse, repeats=0)


def _ista(y, dictionary, steps, thresholds):
    # an independent ISTA on 0.5||D*z - y||^2 + lam||z||_1, written out with autograd for the gradient
    k = dictionary.shape[-1]
    centred = y - y.mean(dim=(-2, -1), keepdim=True)
    z = torch.zeros(y.shape[0], dictionary.shape[1], *y.shape[-2:])
    for step, lam in zip(steps, thresholds):
        z = z.detach().requires_grad_(True)
        data_term = 0.5 * (F.conv2d(z, dictionary, padding=k // 2) - centred).pow(2).sum()
        (gradient,) = torch.autograd.grad(data_term, z)
        v = z - step * gradient
        z = torch.sign(v) * torch.clamp(v.abs() - step * lam, min=0)
    return F.conv2d(z.detach(), dictionary, padding=k // 2) + y.mean(dim=(-2, -1), keepdim=True)


def test_sparse_coder_shapes_and_ista():
    coder = UnrolledSparseCoder(channels=1, atoms=6, kernel_size=3, iterations=4, tied=True, seed=1)
    y = torch.rand(2, 1, 10, 12, generator=torch.Generator().manual_seed(0))
    out = coder(y)
    assert out.shape == y.shape and coder.codes(y).shape == (2, 6, 10, 12)
    reference = _ista(y, coder.dictionary.detach(), coder.steps.detach(), coder.thresholds.detach())
    assert torch.allclose(out.detach(), reference, atol=1e-5), float((out - reference).abs().max())
    # LISTA starts as ISTA: its analysis filters are initialised to the dictionary
    lista = UnrolledSparseCoder(channels=1, atoms=6, kernel_size=3, iterations=4, tied=False, seed=1)
    assert torch.allclose(lista(y), out, atol=1e-6)
    assert sum(p.numel() for p in lista.parameters()) > sum(p.numel() for p in coder.parameters())
    # the codes are sparse and the ISTA objective falls with more iterations
    assert float((coder.codes(y) == 0).float().mean()) > 0.2
    assert torch.equal(soft_threshold(torch.tensor([-2.0, 0.5, 3.0]), 1.0), torch.tensor([-1.0, 0.0, 2.0]))


def test_sparse_coder_meta_learning_runs_and_learns():
    coder = UnrolledSparseCoder(channels=1, atoms=8, kernel_size=3, iterations=3, seed=0)
    batch = _denoising_batch(tasks=2)
    learner = MAML(coder, inner_lr=0.05, inner_steps=2)
    optimizer = torch.optim.Adam(coder.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = learner.meta_loss(batch, _mse)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    assert coder.dictionary.grad is not None and coder.raw_steps.grad is not None


def test_sparse_coder_bad_input():
    with pytest.raises(ValueError, match="odd"):
        UnrolledSparseCoder(kernel_size=4)
    with pytest.raises(TypeError, match="tied"):
        UnrolledSparseCoder(tied="yes")
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
        UnrolledSparseCoder()(torch.rand(1, 3, 8, 8))


def test_grid_titles_are_wrapped_not_cut():
    from metalearn_kit.widgets.render import wrap_title

    assert wrap_title("gaussian noise\ntest", 9) == "gaussian\nnoise\ntest"
    assert wrap_title("super resolution", 9).replace("\n", " ") == "super resolution"
    with pytest.raises(TypeError, match="width"):
        wrap_title("x", 2.0)
