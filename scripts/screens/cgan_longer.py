"""Screen: the shipped CGAN recipe trained longer (8000 iterations instead of 5000), scored like the benchmark
(`background_quality`); not shipped. `python scripts/screens/cgan_longer.py` (one thread, ~14 min)."""
import time
from dataclasses import replace

import torch

from metalearn_kit.evaluation.generation import background_quality
from metalearn_kit.pretrained import load_or_train
from metalearn_kit.recipes.generation import generation_config, load_sources
from metalearn_kit.recipes.generation_cgan import CGANConfig, train_cgan

torch.set_num_threads(1)
config = generation_config("fast")
bg, _ = load_sources(config)
featnet = load_or_train("generation_featnet", config, config.seed, options={"background": bg})[0]
recipe = replace(CGANConfig.from_generation_config(config), iterations=8000)
t = time.perf_counter()
model, hist = train_cgan(recipe, bg, seed=config.seed)
print("trained", time.perf_counter() - t, flush=True)
torch.save(model.state_dict(), "cgan_8000.pt")
print(background_quality(model, featnet, bg, seed=config.seed), flush=True)
