"""Look-alike classes across the glyph splits, as the models see them: the cosine similarity of the class-mean
drawn images (glyphs() defaults: 28 px, seed 0, 20 drawers per letter).

Prints the closest evaluation/background pairs, the 90th percentile of the nearest-neighbour similarity inside
the evaluation split (the reason for the limit in data/glyph_source.py), and how many evaluation letters reach
the limit. Run it on any checkout: ``python scripts/glyph_lookalikes.py [--top 10]``.
"""

from __future__ import annotations

import argparse

import torch


def class_means(source) -> torch.Tensor:
    """Unit-norm class-mean images ``[classes, H * W]``."""
    means = torch.stack([source.images_of(c).mean(0).flatten() for c in range(source.num_classes)])
    return torch.nn.functional.normalize(means, dim=1)


def main() -> None:
    from metalearn_kit.data import glyph_source as gs
    from metalearn_kit.data import glyphs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10, help="closest cross-split pairs to list")
    args = parser.parse_args()
    torch.set_num_threads(1)
    background, evaluation = glyphs("background"), glyphs("evaluation")
    train, test = class_means(background), class_means(evaluation)
    cross = test @ train.T
    within = test @ test.T
    within.fill_diagonal_(-1.0)
    limit = getattr(gs, "_CLASS_MEAN_COSINE_THRESHOLD", None)
    print(f"classes: background {background.num_classes}, evaluation {evaluation.num_classes}")
    print(f"within-evaluation nearest-neighbour cosine: max {float(within.max()):.3f}, "
          f"90th percentile {float(torch.quantile(within.max(1).values, 0.9)):.3f}")
    values, order = cross.flatten().sort(descending=True)
    print(f"closest evaluation/background pairs (limit {limit}):")
    for value, flat in zip(values[: args.top].tolist(), order[: args.top].tolist()):
        i, j = divmod(flat, background.num_classes)
        print(f"  {value:.3f}  {evaluation.classes[i]} {evaluation.character(i)}  vs  "
              f"{background.classes[j]} {background.character(j)}")
    for threshold in sorted({0.93, 0.935, 0.94, 0.95, *([limit] if limit else [])}):
        count = int((cross.max(1).values >= threshold).sum())
        print(f"evaluation letters with a background class mean at cosine >= {threshold}: {count}")


if __name__ == "__main__":
    main()
