"""Quick probe used to choose the operator families (kept so the choice can be re-measured).

For one family and one model: Meta-SGD meta-training on small training patches, joint pretraining with at least
the same gradient evaluations, then on held-out photographs and held-out task parameters (64x64 patches): the
meta-init before/after 5 steps of its learned inner loop vs the joint model fine-tuned 5 steps (Adam or the
meta-init's SGD setting, learning rate picked on the support loss). Prints one line of PSNRs.

    OMP_NUM_THREADS=1 python scripts/probe_operator_families.py tone_curve pointwise --iterations 200
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    from metalearn_kit.data import photos
    from metalearn_kit.evaluation.restoration import learner_curve, mse_loss, tuned_curve
    from metalearn_kit.meta import MAML, MetaSGD, MetaTrainConfig, joint_pretrain, meta_train
    from metalearn_kit.models.operator_nets import FilterRestorer, PointwiseRestorer
    from metalearn_kit.models.restoration import ResidualRestorer
    from metalearn_kit.tasks import RestorationTasks

    parser = argparse.ArgumentParser()
    parser.add_argument("family")
    parser.add_argument("model", choices=("pointwise", "filter", "residual"))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--inner-steps", type=int, default=5)
    parser.add_argument("--inner-lr", type=float, default=0.05)
    parser.add_argument("--meta-lr", type=float, default=3e-3)
    parser.add_argument("--meta-batch", type=int, default=4)
    parser.add_argument("--train-patch", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--test-tasks", type=int, default=16)
    parser.add_argument("--algorithm", choices=("metasgd", "maml", "fomaml"), default="metasgd")
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    channels = 3 if args.family in ("colour_cast", "channel_shift") else 1

    def build():
        if args.model == "pointwise":
            return PointwiseRestorer(channels, args.width, args.depth)
        if args.model == "filter":
            return FilterRestorer(channels, args.width, args.depth)
        return ResidualRestorer(channels, args.width, args.depth)

    train = RestorationTasks(photos("train", args.train_patch, channels), args.family, 4, 4, split="train")
    test = RestorationTasks(photos("test", 64, channels), args.family, 4, 4, split="test")
    torch.manual_seed(args.seed)
    model = build()
    if args.algorithm == "metasgd":
        learner = MetaSGD(model, inner_lr=args.inner_lr, inner_steps=args.inner_steps, inner_grad_clip=None,
                          first_order=args.first_order)
    else:
        learner = MAML(model, inner_lr=args.inner_lr, inner_steps=args.inner_steps,
                       first_order=args.algorithm == "fomaml" or args.first_order)
    start = time.perf_counter()
    settings = MetaTrainConfig(iterations=args.iterations, meta_batch=args.meta_batch, meta_lr=args.meta_lr,
                               progress=False, grad_clip=1.0, meta_lr_schedule="cosine")
    history = meta_train(learner, train, mse_loss, settings, generator=args.seed)
    meta_s = time.perf_counter() - start
    torch.manual_seed(args.seed)
    joint = build()
    start = time.perf_counter()
    # same tasks per step, (inner_steps + 1) x the steps: at least the gradient evaluations of meta-training
    joint_pretrain(joint, train, mse_loss, args.iterations * (args.inner_steps + 1), meta_batch=args.meta_batch,
                   lr=args.meta_lr, generator=args.seed, progress=False)
    joint_s = time.perf_counter() - start
    g = torch.Generator().manual_seed(10_000 + args.seed)
    rows = {"input": [], "meta0": [], "meta5": [], "joint0": [], "joint5": []}
    from metalearn_kit.evaluation.metrics import psnr
    for _ in range(args.test_tasks):
        task = test.sample(g)
        rows["input"].append(psnr(task.query[0], task.query[1]))
        m = learner_curve(learner, task.support, task.query, mse_loss, [0, 5])
        j = tuned_curve(joint, task.support, task.query, mse_loss, [0, 5], extra=[("sgd", args.inner_lr)])
        rows["meta0"].append(m["psnr"][0])
        rows["meta5"].append(m["psnr"][5])
        rows["joint0"].append(j["psnr"][0])
        rows["joint5"].append(j["psnr"][5])
    diff = [a - b for a, b in zip(rows["meta5"], rows["joint5"])]
    se = statistics.stdev(diff) / len(diff) ** 0.5
    mean = {k: statistics.mean(v) for k, v in rows.items()}
    print(f"{args.family} {args.model} {args.algorithm} it={args.iterations} steps={args.inner_steps} "
          f"lr={args.inner_lr} meta_lr={args.meta_lr} | input {mean['input']:.2f} meta0 {mean['meta0']:.2f} "
          f"meta5 {mean['meta5']:.2f} joint0 {mean['joint0']:.2f} joint5 {mean['joint5']:.2f} | meta5-joint5 "
          f"{statistics.mean(diff):+.2f} +- {se:.2f} | meta {meta_s:.0f}s joint {joint_s:.0f}s "
          f"final meta loss {history['meta_loss'][-1]:.4g}", flush=True)


if __name__ == "__main__":
    main()
