"""Colour BM3D (CBM3D) on the 24 Kodak photographs at sigma = 15, 25, 50 (0-255 scale), beside the figures the
FFDNet paper publishes (34.28 / 31.68 / 28.46 dB): the kit's PSNR on a standard set, checked before any learned
method's figure on Kodak24 is believed. Noise is added without clipping, as in the paper; the protocol is in
``metalearn_kit/evaluation/standard_sets.py``. About 18 s per photograph and sigma on one core.

    python scripts/kodak24_cbm3d.py --json docs/benchmarks/kodak24_cbm3d.json
    python scripts/kodak24_cbm3d.py --images 2 --sigmas 25
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--images", type=int, default=24, help="use the first N photographs (1-24)")
    parser.add_argument("--sigmas", type=int, nargs="+", default=[15, 25, 50], help="noise levels, 0-255 scale")
    parser.add_argument("--root", default=None, help="folder of kodim01.png ... (default: $METALEARN_KIT_KODAK24, "
                        "else download once into the kit's cache)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not 1 <= args.images <= 24:
        parser.error(f"--images must be between 1 and 24, got {args.images}")
    if any(not 1 <= s <= 255 for s in args.sigmas):
        parser.error(f"--sigmas must lie in 1-255 (the 0-255 scale), got {args.sigmas}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")

    import torch

    from metalearn_kit.config import describe_machine
    from metalearn_kit.evaluation.standard_sets import kodak24_cbm3d

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = kodak24_cbm3d(tuple(args.sigmas), args.images, root=args.root)
    print(f"{'sigma':>5} {'noisy dB':>9} {'CBM3D dB':>9} {'published':>9} {'difference':>10}  "
          f"({args.images} photographs)")
    for noisy, cbm3d in zip(rows[::2], rows[1::2]):
        published = cbm3d["published"]
        gap = f"{cbm3d['value'] - published:+10.2f}" if published is not None else f"{'-':>10}"
        print(f"{cbm3d['sigma']:>5} {noisy['value']:>9.2f} {cbm3d['value']:>9.2f} "
              f"{published if published is not None else '-':>9} {gap}")
    payload = {"benchmark": "kodak24_cbm3d", "images": args.images, "sigmas": args.sigmas,
               "wall_time_s": time.perf_counter() - start, "machine": describe_machine(),
               "command": "python scripts/kodak24_cbm3d.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "rows": rows}
    print(f"wall time {payload['wall_time_s']:.0f} s")
    if args.json:
        from metalearn_kit.benchmark_tables import write_table

        write_table(args.json, payload)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
