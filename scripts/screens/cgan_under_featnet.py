"""Screen (issue 17): the shipped CGAN's background samples scored by another feature network (a state dict saved by
`featnet_screen.py`), with the benchmark's `background_quality`:
`python scripts/screens/cgan_under_featnet.py featnet_8000_32_64.pt` (one thread, under a minute)."""
import sys

import torch

from metalearn_kit.evaluation.features import FeatureNet
from metalearn_kit.evaluation.generation import background_quality
from metalearn_kit.pretrained import load_pretrained
from metalearn_kit.recipes.generation import generation_config, load_sources

torch.set_num_threads(1)
config = generation_config("fast")
bg, _ = load_sources(config)
state = torch.load(sys.argv[1])
featnet = FeatureNet(bg.num_classes, feature_dim=state["classifier.weight"].shape[1],
                     width=state["trunk.0.weight"].shape[0])
featnet.load_state_dict(state)
featnet.eval()
model, _ = load_pretrained("generation_cgan")
print(sys.argv[1], background_quality(model, featnet, bg, seed=config.seed))
