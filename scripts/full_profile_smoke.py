"""Run every experiment of the GPU ``full`` profile end to end on any machine, with its iteration and evaluation
counts cut to a minimum and every other size left at full (:mod:`metalearn_kit.evaluation.full_profile_smoke`):
the check that the full profile builds, trains, adapts and evaluates before a GPU is spent on it.

    python scripts/full_profile_smoke.py                  # all restoration experiments and generation
    python scripts/full_profile_smoke.py image_fitting    # some of them

Prints one line per experiment (rows produced, seconds) and exits non-zero if any failed. Nothing is written
outside a temporary folder: checkpoints trained here go to a throw-away checkpoint and cache folder.
"""

from __future__ import annotations

import sys


def main(names: list[str]) -> int:
    from metalearn_kit.evaluation.full_profile_smoke import smoke_full_profile

    return smoke_full_profile(names)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
