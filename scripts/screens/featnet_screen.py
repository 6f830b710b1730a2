"""Screen of the feature network training length (issue 17): `python scripts/screens/featnet_screen.py 500,32,64
4000,32,64` trains train_feature_net for each steps,width,feature_dim and prints its held-out accuracy."""

import sys
import time

import torch

from metalearn_kit.data import glyphs
from metalearn_kit.evaluation.features import train_feature_net

torch.set_num_threads(1)
b = glyphs("background")
for steps, width, fd in [(int(a) for a in s.split(",")) for s in sys.argv[1:]]:
    t = time.perf_counter()
    net, h = train_feature_net(b, steps=steps, width=width, feature_dim=fd, generator=0)
    print(
        steps,
        width,
        fd,
        "hold",
        h["holdout_accuracy"],
        "train",
        h["train_accuracy"],
        "sec",
        time.perf_counter() - t,
        flush=True,
    )
    torch.save(net.state_dict(), f"featnet_{steps}_{width}_{fd}.pt")
