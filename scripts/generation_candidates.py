"""Screen the candidate inner-loop generators on the same unseen glyph classes, K = 5, k = 10.

Candidates (every one measured is reported, the choice is by these numbers):

- ``cavia``: the shipped context VAE, second-order CAVIA (the kit's ``cavia`` method);
- ``cavia_first_order``: the same recipe trained with the first-order outer gradient;
- ``maml_posterior``: the shipped MAML VAE adapted for k steps, sampled from the adapted posterior over the
  support set (a Gaussian fitted to the support images' posterior means and variances) instead of the
  fixed prior ``N(0, I)``;
- ``maml_prior``: the same adapted MAML VAE sampled from its prior (what the benchmark's ``maml`` row does);
- ``joint_long``: joint pretraining with as many iterations as ``cavia`` (a fairness check of the NLL
  comparison: the benchmark's ``joint`` has the MAML VAEs' budget), then the same SGD fine-tuning.

Metrics as in ``bench generation``: query NLL (importance-weighted bound, nats), 5-way prototype accuracy,
novelty ratio (feature space), mean +- standard error over classes. Writes JSON (``--json``).

    python scripts/generation_candidates.py --json docs/benchmarks/generation_candidates_fast.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch


def _mean_se(values: list[float]) -> dict:
    t = torch.tensor(values, dtype=torch.float64)
    return {"value": float(t.mean()), "std_error": float(t.std() / math.sqrt(len(values))), "tasks": len(values)}


def _posterior_samples(model, support: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Samples decoded from a Gaussian fitted to the support's posteriors: mean of the ``mu``s, variance =
    their spread plus the mean posterior variance (the moment-matched mixture of ``q(z | x_k)``)."""
    from metalearn_kit.models.generation import mean_image

    with torch.no_grad():
        mu, logvar = model.encode(support)
        center = mu.mean(0)
        var = mu.var(0, unbiased=False) + logvar.exp().mean(0)
        z = center + torch.randn(count, mu.shape[1], generator=generator) * var.sqrt()
        return mean_image(model.decode(z), model.likelihood)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from dataclasses import replace

    from metalearn_kit.evaluation.features import extract_features, prototype_accuracy
    from metalearn_kit.evaluation.novelty import novelty_ratio
    from metalearn_kit.meta import MAML, finetune
    from metalearn_kit.models.generation import importance_weighted_nll, mean_image, vae_loss_fn
    from metalearn_kit.pretrained import load_or_train
    from metalearn_kit.recipes.generation import generation_config, load_sources, train_vae
    from metalearn_kit.recipes.generation_cavia import CaviaConfig, adapt_and_sample, train_context_vae

    config = generation_config("fast")
    background, evaluation = load_sources(config)
    start = time.perf_counter()

    def trained(name: str):
        return load_or_train(f"generation_{name}", config, config.seed, options={"background": background})[0]

    featnet = trained("featnet")
    models = {name: trained(name) for name in ("cavia", "maml")}
    recipe = CaviaConfig.from_generation_config(config)
    fo_model, fo_history = train_context_vae(replace(recipe, first_order=True), background, seed=config.seed)
    fo_model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        joint_long, _ = train_vae("joint", replace(config, meta_iterations=recipe.iterations), background)
    train_seconds = time.perf_counter() - start

    shots, steps, queries = 5, 10, config.eval_queries
    rng = torch.Generator().manual_seed(config.seed + 1)
    results: dict[str, dict[str, list]] = {}

    def record(name: str, nll: float | None, samples: torch.Tensor, task: dict) -> None:
        feats = extract_features(featnet, samples.clamp(0, 1))
        out = results.setdefault(name, {"query_nll_nats": [], "prototype_accuracy": [], "novelty_ratio": []})
        if nll is not None:
            out["query_nll_nats"].append(nll)
        out["prototype_accuracy"].append(prototype_accuracy(feats, [task["qf"], *task["df"]]))
        out["novelty_ratio"].append(novelty_ratio(feats, task["sf"], task["qf"]))

    targets = torch.randperm(evaluation.num_classes, generator=rng)[:args.tasks].tolist()
    with torch.random.fork_rng():
        torch.manual_seed(config.seed + 2)
        for index, target in enumerate(targets):
            images = evaluation.images_of(target)
            order = torch.randperm(images.shape[0], generator=rng)
            query, support = images[order[:queries]], images[order[queries:queries + shots]]
            others = [c for c in torch.randperm(evaluation.num_classes, generator=rng).tolist() if c != target]
            task = {"qf": extract_features(featnet, query), "sf": extract_features(featnet, support),
                    "df": [extract_features(featnet, evaluation.images_of(c)[:queries]) for c in others[:4]]}
            labels = torch.zeros(shots, dtype=torch.int64)
            for name, model in (("cavia", models["cavia"]), ("cavia_first_order", fo_model)):
                out = adapt_and_sample(model, support, query, [steps], torch.Generator().manual_seed(index),
                                       config.sample_count, config.iw_samples)[steps]
                record(name, out["nll"], out["samples"], task)
            learner = MAML(models["maml"], inner_lr=config.inner_lr, inner_grad_clip=config.inner_grad_clip)
            adapted = learner.adapt((support, labels), vae_loss_fn, steps).to_module()
            nll = float(importance_weighted_nll(adapted, query, config.iw_samples).mean())
            z = torch.randn(config.sample_count, config.latent, generator=torch.Generator().manual_seed(index))
            with torch.no_grad():
                record("maml_prior", nll, mean_image(adapted.decode(z), config.likelihood), task)
            record("maml_posterior", nll, _posterior_samples(adapted, support, config.sample_count,
                                                             torch.Generator().manual_seed(index)), task)
            tuned = finetune(joint_long, (support, labels), vae_loss_fn, steps, config.inner_lr, "sgd",
                             grad_clip=config.inner_grad_clip).to_module()
            nll = float(importance_weighted_nll(tuned, query, config.iw_samples).mean())
            with torch.no_grad():
                record("joint_long", nll, mean_image(tuned.decode(z), config.likelihood), task)
    table = {name: {metric: _mean_se(values) for metric, values in metrics.items() if values}
             for name, metrics in results.items()}
    print(f"candidates on {len(targets)} unseen glyph classes, K = {shots}, k = {steps} (mean +- s.e.)")
    print(f"{'candidate':<20}{'query NLL':>18}{'proto acc':>18}{'novelty':>14}")
    for name, metrics in table.items():
        cells = [f"{metrics[m]['value']:.2f} +- {metrics[m]['std_error']:.2f}" if m in metrics else "-"
                 for m in ("query_nll_nats", "prototype_accuracy", "novelty_ratio")]
        print(f"{name:<20}{cells[0]:>18}{cells[1]:>18}{cells[2]:>14}")
    if args.json:
        from metalearn_kit.config import describe_machine

        payload = {"profile": "fast", "device": "cpu", "shots": shots, "steps": steps,
                   "eval_classes": [evaluation.classes[t] for t in targets],
                   "candidates": table, "train_seconds": train_seconds,
                   "cavia_first_order_loss_last": fo_history["loss"][-1], "machine": describe_machine(),
                   "command": "python scripts/generation_candidates.py " + " ".join(sys.argv[1:])}
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
