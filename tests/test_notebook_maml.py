"""The didactic MAML of notebooks/02_meta_training.ipynb (the cell tagged ``didactic-maml``) computes the same
meta-gradient as the library's ``metalearn_kit.meta.MAML``: the test executes that very cell, so the notebook
cannot drift from the engine unnoticed."""

from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from metalearn_kit.meta import MAML
from metalearn_kit.models.conv import ConvRestorer
from metalearn_kit.tasks import RestorationTasks

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "02_meta_training.ipynb"
TAG = "didactic-maml"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: one thread is faster, and far faster on a shared machine; restored afterwards
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tagged_cells(tag: str) -> list:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code" and tag in c.get("metadata", {}).get("tags", [])]


def _didactic_namespace() -> dict:
    cells = _tagged_cells(TAG)
    assert len(cells) == 1, f"expected exactly one cell tagged {TAG!r} in {NOTEBOOK.name}, found {len(cells)}"
    namespace: dict = {}
    exec(compile(cells[0].source, f"{NOTEBOOK.name}[{TAG}]", "exec"), namespace)  # noqa: S102 - our own notebook
    return namespace


def _loss_fn(model, batch):
    degraded, clean = batch
    return F.mse_loss(model(degraded), clean)


def _float64_batch(tasks: int, seed: int):
    clean = torch.rand(24, 1, 12, 12, generator=torch.Generator().manual_seed(seed))
    distribution = RestorationTasks(clean, "gaussian_noise", shots=3, queries=2, split="train")
    batch = distribution.sample_batch(tasks, generator=seed)
    batch.support = tuple(t.double() for t in batch.support)
    batch.query = tuple(t.double() for t in batch.query)
    return batch


def _grads(loss, model):
    return torch.autograd.grad(loss, list(model.parameters()))


def test_the_didactic_cell_is_short_and_defines_the_function():
    cell = _tagged_cells(TAG)[0]
    code_lines = [line for line in cell.source.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(code_lines) <= 25, f"the didactic MAML should stay about 20 lines, it has {len(code_lines)}"
    assert callable(_didactic_namespace()["maml_meta_loss"])


@pytest.mark.parametrize("inner_steps", [1, 3])
@pytest.mark.parametrize("backend", ["func", "higher"])
def test_didactic_meta_gradient_matches_the_library_in_float64(inner_steps, backend):
    maml_meta_loss = _didactic_namespace()["maml_meta_loss"]
    torch.manual_seed(3)
    model = ConvRestorer(width=8, depth=3).double()
    batch = _float64_batch(tasks=3, seed=7)
    inner_lr = 0.05

    mine_loss = maml_meta_loss(model, _loss_fn, batch.support, batch.query, inner_lr, inner_steps)
    mine = _grads(mine_loss, model)
    learner = MAML(model, inner_lr=inner_lr, inner_steps=inner_steps, backend=backend)
    library_loss = learner.meta_loss(batch, _loss_fn)
    library = _grads(library_loss, model)

    assert abs(mine_loss.item() - library_loss.item()) < 1e-12
    scale = max(float(g.abs().max()) for g in library)
    assert scale > 1e-8, "the meta-gradient must not be trivially zero"
    difference = max(float((a - b).abs().max()) for a, b in zip(mine, library))
    assert difference < 1e-6, f"didactic vs library ({backend}, {inner_steps} steps): {difference:.3e}"


def test_the_comparison_is_sensitive_to_second_order_terms():
    # the didactic (second-order) gradient must differ from first-order MAML's, or the test above proves little
    maml_meta_loss = _didactic_namespace()["maml_meta_loss"]
    torch.manual_seed(3)
    model = ConvRestorer(width=8, depth=3).double()
    batch = _float64_batch(tasks=3, seed=7)
    mine = _grads(maml_meta_loss(model, _loss_fn, batch.support, batch.query, 0.05, 3), model)
    first_order = _grads(MAML(model, inner_lr=0.05, inner_steps=3, first_order=True).meta_loss(batch, _loss_fn), model)
    difference = max(float((a - b).abs().max()) for a, b in zip(mine, first_order))
    assert difference > 1e-6, f"first- and second-order gradients agree to {difference:.1e}; make the test harder"
