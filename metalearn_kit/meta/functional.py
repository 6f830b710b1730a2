"""``FunctionalModel``: the model with other weights, what ``loss_fn(model, batch)`` receives during
adaptation. A pure function of the weights (``torch.func.functional_call``), so it runs under ``vmap``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call


class _MethodCall(nn.Module):
    """Calls ``getattr(inner, method)`` so ``functional_call`` can run any method, not only ``forward``."""

    def __init__(self, inner: nn.Module, method: str) -> None:
        super().__init__()
        self.m = inner
        self.method = method

    def forward(self, *args, **kwargs):
        return getattr(self.m, self.method)(*args, **kwargs)


class FunctionalModel:
    """A callable view of ``module`` with other weights: ``fm(x)`` is ``module(x)`` computed with ``tensors``
    (parameters and buffers by name) in place of the module's own; the module itself is not touched.
    Other methods work too (``fm.encode(x)``, ``fm.decode(z)``) through the same substitution.

    This is what ``loss_fn(model, batch)`` receives as ``model`` during adaptation and meta-training."""

    def __init__(self, module: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
        self.module = module
        self.tensors = dict(tensors)

    def __call__(self, *args, **kwargs):
        return functional_call(self.module, self.tensors, args, kwargs, strict=False)

    def __getattr__(self, name: str):
        if name.startswith("_") or name in ("module", "tensors"):
            raise AttributeError(name)
        attr = getattr(self.module, name)
        if not callable(attr) or isinstance(attr, nn.Module):
            return attr
        caller = _MethodCall(self.module, name)
        prefixed = {f"m.{k}": v for k, v in self.tensors.items()}
        return lambda *args, **kwargs: functional_call(caller, prefixed, args, kwargs, strict=False)

    @property
    def training(self) -> bool:
        return self.module.training


__all__ = ["FunctionalModel"]
