"""``metalearn-kit bench generation``: the few-shot generation table on unseen glyph classes.

One table, method x shots (K) x adaptation steps (k) -> query NLL (nats, importance-weighted bound),
5-way prototype accuracy, Frechet distance and novelty ratio of generated samples (each row with its
``kind``); the conditional GAN's accuracy on its own background classes; then whether each target holds.

``--test-source omniglot`` evaluates on real handwriting (Omniglot's evaluation alphabets, read from
``--data-root``) instead of the glyphs' evaluation alphabets; the models stay trained on the glyphs.
``--json PATH`` writes ``{"rows": [{experiment, method, kind, shots, steps, metric, value, std_error, tasks},
...], "targets": [...], "config": ..., "machine": ..., "cgan_background": ..., "feature_net": ..., ...}``.

``--make-checkpoint NAME`` (re)trains one model with the profile's config and writes the shipped checkpoint
``metalearn_kit/checkpoints_data/generation_NAME_PROFILE.safetensors`` (config, seed, metrics and machine are
recorded in it), then exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict

import torch

__all__ = ["TEST_SOURCES", "configure_parser", "load_test_source", "main"]

TEST_SOURCES = ("glyphs", "omniglot", "omniglot-background")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from ..config import PROFILE_HELP, PROFILES
    from ..evaluation.generation import METHODS
    from ..recipes.generation import CHECKPOINT_NAMES

    parser.add_argument("--profile", choices=PROFILES, default=None, help=PROFILE_HELP)
    parser.add_argument("--json", metavar="PATH", default=None, help="write rows, targets and config as JSON")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run")
    parser.add_argument("--grid", metavar="PNG", default=None, help="save a grid of generated samples")
    parser.add_argument("--eval-tasks", type=int, default=None, help="override the number of evaluation classes")
    parser.add_argument("--make-checkpoint", choices=(*CHECKPOINT_NAMES, "all"), default=None,
                        help="train this model and write its shipped checkpoint, then exit")
    parser.add_argument("--merge", nargs="+", metavar="PART_JSON", default=None,
                        help="merge the JSON of runs over disjoint --methods (same profile and config) into one "
                             "table, without running anything")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, mps (default: $METALEARN_KIT_DEVICE, else CUDA if available, else CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--progress", action="store_true", help="show training progress bars")
    parser.add_argument("--test-source", choices=TEST_SOURCES, default="glyphs",
                        help="the unseen test classes: glyphs (evaluation alphabets, default), omniglot or "
                             "omniglot-background (real handwriting, from --data-root)")
    parser.add_argument("--data-root", default=None, help="folder of the Omniglot zips (default: the cache)")
    parser.add_argument("--no-download", action="store_true", help="never download the test source")


def load_test_source(name: str, image_size: int, data_seed: int = 0, root=None, download: bool = True):
    """The ``ClassImageSource`` of unseen test classes called ``name`` (one of :data:`TEST_SOURCES`)."""
    from ..data import glyphs, omniglot

    if name not in TEST_SOURCES:
        raise ValueError(f"test source must be one of {TEST_SOURCES}, got {name!r}")
    if name == "glyphs":
        return glyphs("evaluation", image_size=image_size, seed=data_seed)
    split = "background" if name == "omniglot-background" else "evaluation"
    return omniglot(root, split, download=download, image_size=image_size)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _make_checkpoints(name: str, config) -> int:
    """Retrain checkpoint ``name`` (or ``"all"``) with ``config`` and write its shipped file."""
    from ..pretrained import CHECKPOINT_DIR, load_or_train
    from ..recipes.generation import CHECKPOINT_NAMES

    for short in CHECKPOINT_NAMES if name == "all" else (name,):
        path = CHECKPOINT_DIR / f"generation_{short}_{config.profile}.safetensors"
        _, info = load_or_train(f"generation_{short}", config, config.seed, retrain=True, save_to=path, log=_log)
        size_mb = os.path.getsize(path) / 2**20
        _log(f"wrote {path} ({size_mb:.2f} MB) in {info['seconds']:.1f} s: {info['metrics']}")
    return 0


def _print_targets(targets: list[dict]) -> None:
    print("\nTargets:")
    for t in targets:
        verdict = {True: "HOLDS", False: "DOES NOT HOLD", None: "NOT MEASURED"}[t["holds"]]
        print(f"  [{verdict}] {t['target']}: {t['detail']}")


def _write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=1, default=str)


def _print_table(result: dict, config, test_name: str) -> None:
    """The table, what its columns mean, the CGAN's background-class check and where each model came from."""
    from ..evaluation.generation import format_table

    steps_note = ("" if config.steps == [0, 1, 5, 10, 50] else f" (subset of k: {config.steps})")
    print(f"\nFew-shot generation on {len(result['info']['eval_classes'])} unseen classes of {test_name}, "
          f"profile {config.profile}{steps_note}; mean +- standard error over classes")
    print(format_table(result["rows"]))
    print("statistician has no inner loop (k = 0 only); figr and cgan are GANs: no likelihood, samples only. "
          "novelty: samples' feature distance to the nearest support image / real query images' (0 = copies).")
    if "cgan_background" in result["info"]:
        q = result["info"]["cgan_background"]
        print(f"cgan on its {q['classes']} background classes: {q['accuracy']:.1%} of samples classified as the class "
              f"asked for by the feature net (its accuracy on real held-out images: {q['holdout_accuracy']:.1%}), "
              f"novelty ratio vs the training images {q['novelty_ratio']:.2f}")
    for name, info in result["info"]["checkpoints"].items():
        print(f"  {name}: {info['source']} ({info['seconds']:.1f} s)")


def _payload(config, device, result: dict, targets: list[dict], wall: float, test_name: str) -> dict:
    """What ``--json`` writes."""
    from ..config import describe_machine
    from ..recipes.generation import recipe_config

    info = result["info"]
    return {"experiment": "generation", "profile": config.profile, "device": str(device),
            "config": asdict(config), "rows": result["rows"], "targets": targets, "wall_time_s": wall,
            "eval_seconds": info["eval_seconds"], "eval_classes": info["eval_classes"],
            "checkpoints": info["checkpoints"], "method_seconds": info["method_seconds"],
            "per_task": info["per_task"], "machine": describe_machine(),
            "test_source": test_name, "cgan_background": info.get("cgan_background"),
            "feature_net": {"holdout_accuracy": info["checkpoints"].get("featnet", {}).get(
                "metrics", {}).get("holdout_accuracy"), "holdout": "the last 2 images of every background class",
                "steps": config.feature_steps},
            "recipes": {name: recipe_config(name, config).as_dict() for name in ("cavia", "cgan")},
            "command": "metalearn-kit " + " ".join(sys.argv[1:])}


def main(args: argparse.Namespace) -> int:
    from ..config import get_device
    from ..evaluation.generation import check_targets, evaluate_generation, format_table, save_sample_grid
    from ..recipes.generation import generation_config, load_sources

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    if args.merge:
        return _merge(args, check_targets, format_table)
    overrides = {} if args.eval_tasks is None else {"eval_tasks": args.eval_tasks}
    config = generation_config(args.profile, **overrides)
    start = time.perf_counter()
    if args.make_checkpoint:
        return _make_checkpoints(args.make_checkpoint, config)
    _log(f"generation benchmark, profile {config.profile}, device {device}, {os.cpu_count()} CPUs visible, "
         f"{torch.get_num_threads()} torch threads (the CPU may be shared: timings include contention)")
    background, _ = load_sources(config)
    test = load_test_source(args.test_source, config.image_size, config.data_seed, args.data_root,
                            not args.no_download)
    _log(f"test classes: {test.name} ({test.num_classes} classes, {test.images_per_class} images each)")
    result = evaluate_generation(config, args.methods, sources=(background, test), progress=args.progress, log=_log,
                                 keep_samples=args.grid is not None, device=device)
    wall = time.perf_counter() - start
    _print_table(result, config, test.name)
    targets = check_targets(result, shots=5, steps=10 if 10 in config.steps else max(config.steps))
    _print_targets(targets)
    print(f"\ntotal wall time {wall:.1f} s")
    if args.grid:
        grid_steps = [k for k in (0, 10, max(config.steps)) if k in config.steps]
        _log(f"sample grid: {save_sample_grid(result['samples'], args.grid, shots=[5], steps=grid_steps)}")
    if args.json:
        _write_json(args.json, _payload(config, device, result, targets, wall, test.name))
        _log(f"wrote {args.json}")
    return 0


def _merge(args: argparse.Namespace, check_targets, format_table) -> int:
    """Each method's rows come from its own seeded stream, so runs over disjoint method subsets (e.g. in
    parallel processes) merge into exactly the table one run would give."""
    parts = []
    for path in args.merge:
        with open(path) as handle:
            parts.append(json.load(handle))
    first = parts[0]
    for path, part in zip(args.merge, parts, strict=True):
        if part.get("config") != first.get("config"):
            raise ValueError(f"--merge parts must share one config; {path} differs from {args.merge[0]}")
    methods = [row["method"] for part in parts for row in part["rows"]]
    seen: dict[str, str] = {}
    for path, part in zip(args.merge, parts, strict=True):
        for method in {row["method"] for row in part["rows"]}:
            if method in seen:
                raise ValueError(f"--merge parts must cover disjoint methods; {method!r} is in {seen[method]} "
                                 f"and {path}")
            seen[method] = path
    from ..evaluation.generation import METHODS, METRICS

    rows = sorted((row for part in parts for row in part["rows"]), key=lambda r: (
        METHODS.index(r["method"]), r["shots"], r["steps"], METRICS.index(r["metric"])))
    per_task = {k: v for part in parts for k, v in part.get("per_task", {}).items()}
    # the CGAN's background-class measurement comes with the part that ran cgan
    background = next((part["cgan_background"] for part in parts if part.get("cgan_background")), None)
    result = {"rows": rows, "info": {"per_task": per_task, "cgan_background": background}}
    config = first["config"]
    targets = check_targets(result, shots=5, steps=10 if 10 in config["steps"] else max(config["steps"]))
    print(f"Merged {len(parts)} runs ({sorted(set(methods), key=METHODS.index)}), profile {first['profile']}")
    print(format_table(rows))
    _print_targets(targets)
    if args.json:
        payload = {**first, "rows": rows, "targets": targets, "per_task": per_task, "cgan_background": background,
                   "checkpoints": {k: v for part in parts for k, v in part.get("checkpoints", {}).items()},
                   "method_seconds": {k: v for part in parts for k, v in part.get("method_seconds", {}).items()},
                   "eval_seconds": sum(part.get("eval_seconds", 0.0) for part in parts),
                   "wall_time_s": {path: part.get("wall_time_s") for path, part in zip(args.merge, parts, strict=True)},
                   "merged_from": [part.get("command") for part in parts]}
        _write_json(args.json, payload)
        print(f"wrote {args.json}")
    return 0
