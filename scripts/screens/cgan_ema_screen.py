"""Screen (issue 17): the shipped CGAN recipe, scored like the benchmark (`background_quality`, the shipped feature
network unless --featnet names a saved state dict) every --every iterations, for the last iterate and for
exponential moving averages of the generator weights at each --decays value (tracked side by side in one run).
`python scripts/screens/cgan_ema_screen.py --iters 8000 --decays 0.999,0.9995` (one thread, ~14 min)."""
import argparse
import copy
import json
import time
from dataclasses import replace

import torch

from metalearn_kit.evaluation.features import FeatureNet, extract_features
from metalearn_kit.pretrained import load_or_train
from metalearn_kit.recipes.generation import generation_config, load_sources
from metalearn_kit.recipes.generation_cgan import CGANConfig, train_cgan

p = argparse.ArgumentParser()
p.add_argument("--iters", type=int, default=8000)
p.add_argument("--every", type=int, default=1000)
p.add_argument("--decays", default="0.999,0.9995")
p.add_argument("--ac", type=float, default=None)
p.add_argument("--lr", type=float, default=None)
p.add_argument("--hidden", type=int, default=None)
p.add_argument("--featnet", default=None)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--out", default=None)
p.add_argument("--save", default=None, help="torch.save of the final generators (last and each average)")
a = p.parse_args()
torch.set_num_threads(a.threads)
config = generation_config("fast")
bg, _ = load_sources(config)
if a.featnet:
    state = torch.load(a.featnet)
    featnet = FeatureNet(bg.num_classes, feature_dim=state["classifier.weight"].shape[1],
                         width=state["trunk.0.weight"].shape[0])
    featnet.load_state_dict(state)
else:
    featnet = load_or_train("generation_featnet", config, config.seed, options={"background": bg})[0]
featnet.eval()
changes = {k: v for k, v in (("iterations", a.iters), ("ac_weight", a.ac), ("lr", a.lr), ("hidden", a.hidden))
           if v is not None}
recipe = replace(CGANConfig.from_generation_config(config), **changes)
decays = [float(d) for d in a.decays.split(",") if d]
averages: dict[float, torch.nn.Module] = {}
results = []
start = time.perf_counter()


per_class, held_count = 4, 2
split = bg.images_per_class - held_count
with torch.no_grad():  # the real images' features once (background_quality recomputes them per call)
    f_train = extract_features(featnet, torch.cat([bg.images_of(c)[:split] for c in range(bg.num_classes)]))
    f_train = f_train.reshape(bg.num_classes, split, -1)
    f_held = extract_features(featnet, torch.cat([bg.images_of(c)[split:] for c in range(bg.num_classes)]))
    f_held = f_held.reshape(bg.num_classes, held_count, -1)
    real_dist = torch.cdist(f_held.double(), f_train.double()).min(2).values.mean()
labels = torch.arange(bg.num_classes).repeat_interleave(per_class)
z = torch.randn(labels.shape[0], recipe.latent, generator=torch.Generator().manual_seed(config.seed))


@torch.no_grad()
def score(generator) -> dict:
    """background_quality's two figures, batched (same sample count; a fixed z draw of its own)."""
    was = generator.training
    generator.eval()
    f = extract_features(featnet, generator(z, labels))
    generator.train(was)
    acc = float((featnet.classifier(f).argmax(1) == labels).double().mean())
    dist = torch.cdist(f.reshape(bg.num_classes, per_class, -1).double(), f_train.double()).min(2).values.mean()
    return {"accuracy": round(acc, 4), "novelty_ratio": round(float(dist / real_dist), 3)}


def callback(iteration: int, model) -> None:
    with torch.no_grad():
        for d in decays:
            if d not in averages:
                averages[d] = copy.deepcopy(model.generator).requires_grad_(False)
            for avg, w in zip(averages[d].parameters(), model.generator.parameters()):
                avg.lerp_(w, 1.0 - d)
    if iteration % a.every == 0:
        row = {"iteration": iteration, "seconds": round(time.perf_counter() - start, 1),
               "last": score(model.generator), **{f"ema_{d}": score(avg) for d, avg in averages.items()}}
        results.append(row)
        print(json.dumps(row), flush=True)


final, _ = train_cgan(recipe, bg, seed=config.seed, callback=callback)
if a.save:
    torch.save({"last": final.generator.state_dict() if recipe.ema_decay == 0 else None,
                **{f"ema_{d}": avg.state_dict() for d, avg in averages.items()}}, a.save)
if a.out:
    json.dump({"recipe": recipe.as_dict(), "rows": results}, open(a.out, "w"), indent=1)
