"""``metalearn-kit bench generation``: the few-shot generation table on unseen glyph classes, and on real
Omniglot handwriting when its zip is present.

One table per source, method x shots (K) x adaptation steps (k) -> query NLL (nats, importance-weighted bound)
and the sample metrics of :mod:`metalearn_kit.evaluation.generation` (downstream accuracy, same-alphabet 20-way
accuracy, precision, recall, memorisation ratio, and the older 5-way accuracy, Frechet distance, novelty ratio),
each row with its ``kind`` (the trivial baselines included); the conditional GAN's accuracy on its own background
classes (fidelity on its *training* classes); then whether each target holds.

Real Omniglot: with ``images_background_small1.zip`` in ``--omniglot-root`` (default ``$METALEARN_KIT_OMNIGLOT``,
else ``../shared/datasets/omniglot``) the benchmark also runs on it, split by alphabet: :data:`OMNIGLOT_TEST_ALPHABETS`
alphabets (a seeded draw) are the test classes, the others are the dev classes of the inner-loop choice; the
models stay trained on the glyphs, so every Omniglot class is unseen. The pretrained VAEs (MAML, FOMAML, Reptile,
joint) are fine-tuned with the inner loop each chooses on dev classes
(:mod:`metalearn_kit.evaluation.inner_loop_protocol`; on glyphs, evaluation classes that are not test classes;
``--meta-train-inner-loop``: the meta-training SGD loop instead). ``--no-omniglot`` skips Omniglot;
``--test-source omniglot`` instead evaluates only on Omniglot's evaluation alphabets (the full archive, read from
``--data-root``).
``--json PATH`` writes ``{"rows": [{experiment, method, kind, source, shots, steps, ways, metric, value,
std_error, tasks, per_task}, ...], "targets": [...], "earlier_targets": [...], "sources": {...}, "config": ...,
"machine": ..., "cgan_background": ..., "feature_net": ..., ...}``.

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

__all__ = ["OMNIGLOT_TEST_ALPHABETS", "TEST_SOURCES", "configure_parser", "load_test_source", "main",
           "omniglot_test_split"]

TEST_SOURCES = ("glyphs", "omniglot", "omniglot-background")
OMNIGLOT_TEST_ALPHABETS = 2  # of the small subset's 5: 46 to 66 test characters, >= 24 for the target
OMNIGLOT_TASKS = 24  # unseen Omniglot classes evaluated (the target asks for >= 24)


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
    parser.add_argument("--omniglot-root", default=None,
                        help="folder with images_background_small1.zip (default: $METALEARN_KIT_OMNIGLOT, else "
                             "../shared/datasets/omniglot); the benchmark also runs on it when present")
    parser.add_argument("--omniglot-tasks", type=int, default=OMNIGLOT_TASKS,
                        help=f"unseen Omniglot classes to evaluate (default {OMNIGLOT_TASKS})")
    parser.add_argument("--no-omniglot", action="store_true", help="do not also run on real Omniglot")
    parser.add_argument("--meta-train-inner-loop", action="store_true",
                        help="fine-tune the pretrained VAEs with the meta-training SGD loop instead of the loop "
                             "chosen on dev classes")


def load_test_source(name: str, image_size: int, data_seed: int = 0, root=None, download: bool = True):
    """The ``ClassImageSource`` of unseen test classes called ``name`` (one of :data:`TEST_SOURCES`)."""
    from ..data import glyphs, omniglot

    if name not in TEST_SOURCES:
        raise ValueError(f"test source must be one of {TEST_SOURCES}, got {name!r}")
    if name == "glyphs":
        return glyphs("evaluation", image_size=image_size, seed=data_seed)
    split = "background" if name == "omniglot-background" else "evaluation"
    return omniglot(root, split, download=download, image_size=image_size)


def _subset(source, alphabets: list[int], name: str):
    """The classes of ``source`` in the alphabets (indices) ``alphabets``, as a ``ClassImageSource``."""
    from ..data.base import ClassImageSource

    classes = [c for c in range(source.num_classes) if source.class_alphabet[c] in alphabets]
    images = [source.images_of(c) for c in classes]
    pixels = (torch.cat(images) * 255).round().to(torch.uint8)
    labels = torch.cat([torch.full((x.shape[0],), i, dtype=torch.int64) for i, x in enumerate(images)])
    return ClassImageSource(name, pixels, labels, [source.classes[c] for c in classes],
                            [source.alphabets[a] for a in alphabets],
                            [alphabets.index(source.class_alphabet[c]) for c in classes])


def omniglot_test_split(source, test_alphabets: int = OMNIGLOT_TEST_ALPHABETS, seed: int = 0):
    """``(test, dev)``: the classes of ``test_alphabets`` alphabets of ``source`` (a seeded draw), named
    ``<source.name>/test``, and those of the other alphabets, ``<source.name>/dev`` (for choices, never tested)."""
    if not 1 <= test_alphabets < len(source.alphabets):
        raise ValueError(f"test_alphabets must be in [1, {len(source.alphabets) - 1}], got {test_alphabets}")
    order = torch.randperm(len(source.alphabets), generator=torch.Generator().manual_seed(seed)).tolist()
    return (_subset(source, sorted(order[:test_alphabets]), f"{source.name}/test"),
            _subset(source, sorted(order[test_alphabets:]), f"{source.name}/dev"))


def _omniglot_root(arg: str | None):
    """The folder of the small Omniglot zip, or None when it is not there."""
    from pathlib import Path

    root = Path(arg or os.environ.get("METALEARN_KIT_OMNIGLOT") or Path("..") / "shared" / "datasets" / "omniglot")
    return root if (root / "images_background_small1.zip").exists() else None


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
    from ..benchmark_tables import write_table

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_table(path, payload)  # atomic: a run stopped while writing leaves the previous table whole


def _print_table(result: dict, config, test_name: str) -> None:
    """The table, what its columns mean, the CGAN's background-class check and where each model came from."""
    from ..evaluation.generation import format_table

    steps_note = ("" if config.steps == [0, 1, 5, 10, 50] else f" (subset of k: {config.steps})")
    print(f"\nFew-shot generation on {len(result['info']['eval_classes'])} unseen classes of {test_name}, "
          f"profile {config.profile}{steps_note}; mean +- standard error over classes")
    print(format_table(result["rows"]))
    print("Samples of likelihood models are binarised draws (mean images: the *_mean_image rows of the JSON). "
          "statistician has no inner loop (k = 0 only); figr and cgan are GANs: no likelihood, samples only; "
          "trivial rows learn nothing (support_only: no samples). downstr: 5-way nearest-prototype accuracy on "
          "real queries with support + samples; 20-way alph: samples vs classes of the same alphabet; memoris.: "
          "pixel distance to the support over real drawings' (0 = copies, ~1 = as new as real drawings).")
    if "cgan_background" in result["info"]:
        q = result["info"]["cgan_background"]
        print(f"cgan on its {q['classes']} background (training) classes -- fidelity on classes it was trained on, "
              f"not few-shot: {q['accuracy']:.1%} of samples classified as the class asked for by the feature net "
              f"(its accuracy on real held-out images: {q['holdout_accuracy']:.1%}), novelty ratio vs the training "
              f"images {q['novelty_ratio']:.2f}")
    for name, info in result["info"]["checkpoints"].items():
        print(f"  {name}: {info['source']} ({info['seconds']:.1f} s)")


def _source_info(result: dict, test, extra: dict | None = None) -> dict:
    info = result["info"]
    return {"name": test.name, "eval_classes": info["eval_classes"], "eval_seconds": info["eval_seconds"],
            "method_seconds": info["method_seconds"], "same_alphabet_ways": info["same_alphabet_ways"],
            "alphabets": list(test.alphabets), "inner_loops": info.get("inner_loops"), **(extra or {})}


def _payload(config, device, runs: list[tuple], targets: list[dict], wall: float) -> dict:
    """What ``--json`` writes: the rows of every source; the first source's details at the top level."""
    from ..config import describe_machine
    from ..evaluation.generation import check_earlier_targets
    from ..recipes.generation import recipe_config

    (first, test, _), info = runs[0], runs[0][0]["info"]
    return {"experiment": "generation", "profile": config.profile, "device": str(device),
            "config": asdict(config), "rows": [row for result, _, _ in runs for row in result["rows"]],
            "targets": targets, "wall_time_s": wall,
            "earlier_targets": check_earlier_targets(first, shots=5, steps=10 if 10 in config.steps
                                                     else max(config.steps)),
            "sources": {result["info"]["source"]: _source_info(result, t, extra) for result, t, extra in runs},
            "eval_seconds": info["eval_seconds"], "eval_classes": info["eval_classes"],
            "checkpoints": info["checkpoints"], "method_seconds": info["method_seconds"],
            "per_task": info["per_task"], "machine": describe_machine(),
            "test_source": test.name, "cgan_background": info.get("cgan_background"),
            "feature_net": {"holdout_accuracy": info["checkpoints"].get("featnet", {}).get(
                "metrics", {}).get("holdout_accuracy"), "holdout": "the last 2 images of every background class",
                "steps": config.feature_steps},
            "recipes": {name: recipe_config(name, config).as_dict() for name in ("cavia", "cgan")},
            "command": "metalearn-kit " + " ".join(sys.argv[1:])}


def _omniglot_run(args: argparse.Namespace, config, background, device) -> tuple | None:
    """The same evaluation on the test alphabets of the small real Omniglot subset, when its zip is present."""
    from dataclasses import replace

    from ..data import omniglot
    from ..evaluation.generation import evaluate_generation

    root = None if args.no_omniglot or args.test_source != "glyphs" else _omniglot_root(args.omniglot_root)
    if root is None:
        if not args.no_omniglot and args.test_source == "glyphs":
            _log("real Omniglot: images_background_small1.zip not found (--omniglot-root); glyphs only")
        return None
    source = omniglot(root, "background_small1", download=False, image_size=config.image_size)
    test, dev = omniglot_test_split(source, seed=config.seed)
    _log(f"real Omniglot: test alphabets {test.alphabets} ({test.num_classes} classes), dev alphabets "
         f"{dev.alphabets} ({dev.num_classes} classes)")
    omni_config = replace(config, eval_tasks=min(args.omniglot_tasks, test.num_classes))
    result = evaluate_generation(omni_config, args.methods, sources=(background, test), log=_log,
                                 keep_samples=False, device=device, fair_inner_loop=not args.meta_train_inner_loop,
                                 dev_source=dev)
    return result, test, {"dev_alphabets": dev.alphabets, "eval_tasks": omni_config.eval_tasks}


def main(args: argparse.Namespace) -> int:
    from ..config import get_device
    from ..evaluation.generation import METHODS, check_targets, evaluate_generation, format_table, save_sample_grid
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
                                 keep_samples=args.grid is not None, device=device,
                                 fair_inner_loop=not args.meta_train_inner_loop)
    runs = [(result, test, {"eval_tasks": config.eval_tasks})]
    omniglot_run = _omniglot_run(args, config, background, device)
    runs += [omniglot_run] if omniglot_run else []
    wall = time.perf_counter() - start
    for run_result, run_test, _ in runs:
        _print_table(run_result, config, run_test.name)
    # the time target is for the whole fast benchmark: a partial run's wall time says nothing about it
    whole = config.profile == "fast" and args.eval_tasks is None and set(args.methods) == set(METHODS)
    targets = check_targets([row for r, _, _ in runs for row in r["rows"]], shots=5,
                            steps=10 if 10 in config.steps else max(config.steps), wall_s=wall if whole else None)
    _print_targets(targets)
    print(f"\ntotal wall time {wall:.1f} s")
    if args.grid:
        grid_steps = [k for k in (0, 10, max(config.steps)) if k in config.steps]
        _log(f"sample grid: {save_sample_grid(result['samples'], args.grid, shots=[5], steps=grid_steps)}")
    if args.json:
        _write_json(args.json, _payload(config, device, runs, targets, wall))
        _log(f"wrote {args.json}")
    return 0


def _check_parts(paths: list[str], parts: list[dict]) -> None:
    """``--merge`` parts must share one config and cover disjoint learned methods (each carries the trivial and
    reference rows, which are the same in every part: seeded per method)."""
    first = parts[0]
    seen: dict[str, str] = {}
    for path, part in zip(paths, parts, strict=True):
        if part.get("config") != first.get("config"):
            raise ValueError(f"--merge parts must share one config; {path} differs from {paths[0]}")
        for method in {row["method"] for row in part["rows"] if row.get("kind") not in ("trivial", "reference")}:
            if method in seen:
                raise ValueError(f"--merge parts must cover disjoint methods; {method!r} is in {seen[method]} "
                                 f"and {path}")
            seen[method] = path


def _merged_rows(parts: list[dict]) -> list[dict]:
    """Every part's rows, the trivial and reference ones once, in table order."""
    from ..evaluation.generation import METHODS, metric_order

    rows, keys = [], set()
    for part in parts:
        for row in part["rows"]:
            key = (row.get("source"), row["method"], row["shots"], row["steps"], row["metric"])
            if key not in keys:
                keys.add(key)
                rows.append(row)
    return sorted(rows, key=lambda r: (r.get("source") or "", METHODS.index(r["method"]), r["shots"], r["steps"],
                                       metric_order(r["metric"])))


def _merge(args: argparse.Namespace, check_targets, format_table) -> int:
    """Each method's rows come from its own seeded stream, so runs over disjoint method subsets (e.g. in
    parallel processes) merge into exactly the table one run would give."""
    from ..evaluation.generation import METHODS
    from ..evaluation.generation_targets import WALL_LIMIT_S

    parts = []
    for path in args.merge:
        with open(path) as handle:
            parts.append(json.load(handle))
    _check_parts(args.merge, parts)
    first, rows = parts[0], _merged_rows(parts)
    per_task = {k: v for part in parts for k, v in part.get("per_task", {}).items()}
    # the CGAN's background-class measurement comes with the part that ran cgan
    background = next((part["cgan_background"] for part in parts if part.get("cgan_background")), None)
    config = first["config"]
    # the parts ran in parallel or one after another: a single run takes at least the longest part
    longest = max((part.get("wall_time_s") or 0.0) for part in parts)
    targets = check_targets(rows, shots=5, steps=10 if 10 in config["steps"] else max(config["steps"]),
                            wall_s=longest if longest > WALL_LIMIT_S else None)
    print(f"Merged {len(parts)} runs ({sorted({r['method'] for r in rows}, key=METHODS.index)}), "
          f"profile {first['profile']}")
    print(format_table(rows))
    _print_targets(targets)
    if args.json:
        payload = {**first, "rows": rows, "targets": targets, "per_task": per_task, "cgan_background": background,
                   "checkpoints": {k: v for part in parts for k, v in part.get("checkpoints", {}).items()},
                   "method_seconds": {k: v for part in parts for k, v in part.get("method_seconds", {}).items()},
                   "eval_seconds": sum(part.get("eval_seconds", 0.0) for part in parts),
                   "wall_time_s": {path: part.get("wall_time_s") for path, part in zip(args.merge, parts, strict=True)},
                   "merged_from": [part.get("command") for part in parts],
                   "command": f"metalearn-kit bench generation --merge {' '.join(args.merge)} --json {args.json}"}
        _write_json(args.json, payload)
        print(f"wrote {args.json}")
    return 0
