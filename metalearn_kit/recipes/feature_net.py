"""What trains :class:`~metalearn_kit.models.feature_net.FeatureNet`, the classifier that scores generated samples:
shift-augmented cross-entropy on the *background* classes, the last images of each class held out to measure it
(the ``generation_featnet`` checkpoint)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_float, check_int
from ..config import make_generator
from ..models.feature_net import FeatureNet

__all__ = ["classification_accuracy", "train_feature_net"]


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 pixels (keeps the features from keying on exact position)."""
    padded = F.pad(images, (2, 2, 2, 2))
    dx, dy = (int(v) for v in torch.randint(0, 5, (2,), generator=generator))
    size = images.shape[-1]
    return padded[..., dy:dy + size, dx:dx + size]


def train_feature_net(source, steps: int = 600, batch_size: int = 64, lr: float = 2e-3, feature_dim: int = 64,
                      width: int = 32, holdout_per_class: int = 2, generator: torch.Generator | int | None = 0,
                      device: torch.device | str | None = None) -> tuple[FeatureNet, dict]:
    """Train a :class:`FeatureNet` to classify the classes of ``source`` (a ``ClassImageSource``, the
    background split). The last ``holdout_per_class`` images of every class are held out to measure accuracy.

    Trains on ``device`` (default: CPU) and returns the net on the CPU.
    Returns ``(net, history)``; ``history`` has ``loss`` (per step), ``train_accuracy`` and
    ``holdout_accuracy`` (fractions) and ``steps``.
    """
    check_int("steps", steps, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_float("lr", lr, minimum=0.0, strict_min=True)
    check_int("holdout_per_class", holdout_per_class, minimum=0)
    if not hasattr(source, "images_of") or not hasattr(source, "num_classes"):
        raise TypeError(f"source must be a ClassImageSource (with images_of and num_classes), "
                        f"got {type(source).__name__}")
    if source.images_per_class <= holdout_per_class:
        raise ValueError(f"holdout_per_class must be < images_per_class ({source.images_per_class}), "
                         f"got {holdout_per_class}")
    gen = make_generator(generator)
    per_class = [source.images_of(c) for c in range(source.num_classes)]
    split = source.images_per_class - holdout_per_class
    train_x = torch.cat([x[:split] for x in per_class])
    train_y = torch.arange(source.num_classes).repeat_interleave(split)
    hold_x = torch.cat([x[split:source.images_per_class] for x in per_class]) if holdout_per_class else None
    hold_y = torch.arange(source.num_classes).repeat_interleave(holdout_per_class)

    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))  # weight init from the generator
    net = FeatureNet(source.num_classes, channels=source.channels, width=width, feature_dim=feature_dim)
    device = torch.device(device) if device is not None else torch.device("cpu")
    net = net.to(device)
    train_x, train_y = train_x.to(device), train_y.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    losses = []
    net.train()
    for _ in range(steps):
        index = torch.randint(0, train_x.shape[0], (batch_size,), generator=gen).to(device)
        loss = F.cross_entropy(net(_augment(train_x[index], gen)), train_y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    net.eval()
    net = net.cpu()
    train_x, train_y = train_x.cpu(), train_y.cpu()
    history = {"loss": losses, "steps": steps, "train_accuracy": classification_accuracy(net, train_x, train_y)}
    history["holdout_accuracy"] = (classification_accuracy(net, hold_x, hold_y) if hold_x is not None
                                   else float("nan"))
    return net, history


@torch.no_grad()
def classification_accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor, chunk: int = 512) -> float:
    """Fraction of ``images`` the classifier labels correctly."""
    correct = 0
    for start in range(0, images.shape[0], chunk):
        correct += int((net(images[start:start + chunk]).argmax(1) == labels[start:start + chunk]).sum())
    return correct / max(1, images.shape[0])
