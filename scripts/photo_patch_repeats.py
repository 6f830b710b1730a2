"""How often a draw of photo patches holds two identical patches (flat, saturated regions of a photograph).

A task redraws such a repeat so its query never equals a support image; this counts how many draws that
touches, i.e. how many seeded tasks of the photo-based experiments the redraw changes. Usage:
``python scripts/photo_patch_repeats.py [--draws 1000]`` (grey photographs, as the restoration experiments).
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    from metalearn_kit.data import photos

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000, help="draws per (split, patch size, images)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("split  patch  images/draw  draws with a repeated patch")
    for split in ("train", "test"):
        for patch, count in ((16, 8), (32, 10), (32, 20)):
            source = photos(split, patch_size=patch, channels=1)
            generator = torch.Generator().manual_seed(0)
            repeated = 0
            for _ in range(args.draws):
                patches = source.sample_patches(count, generator)
                repeated += len({p.numpy().tobytes() for p in patches}) < count
            print(f"{split:5s}  {patch:5d}  {count:11d}  {repeated} / {args.draws}")


if __name__ == "__main__":
    main()
