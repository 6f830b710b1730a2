"""Print the README's generation table (markdown) from a ``bench generation`` JSON, so the figures quoted in
the README are the benchmark's, not retyped: ``python scripts/generation_readme_table.py
docs/benchmarks/generation_fast.json [--shots 5 --steps 10]``."""

from __future__ import annotations

import argparse
import json

LABELS = {
    "maml": "MAML VAE", "fomaml": "first-order MAML VAE", "reptile": "Reptile VAE",
    "cavia": "**CAVIA context VAE**", "joint": "joint pretraining + fine-tuning",
    "scratch": "scratch on the support set",
    "statistician": "Neural-Statistician-lite (no inner loop)", "figr": "Reptile WGAN-GP (FIGR)",
    "cgan": "CGAN, new-class embedding inverted",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    payload = json.loads(open(args.json).read())
    cells: dict[str, dict[str, str]] = {}
    kinds: dict[str, str] = {}
    for row in payload["rows"]:
        steps = 0 if row["method"] == "statistician" else args.steps
        if row["shots"] != args.shots or row["steps"] != steps:
            continue
        value, se = row["value"], row["std_error"]
        if row["metric"] == "prototype_accuracy":
            text = f"{value:.0%} ± {se:.0%}"
        elif row["metric"] == "frechet_distance":
            text = f"{value:.0f} ± {se:.0f}"
        elif row["metric"] == "novelty_ratio":
            text = f"{value:.2f} ± {se:.2f}"
        else:
            text = f"{value:.1f} ± {se:.1f}"
        cells.setdefault(row["method"], {})[row["metric"]] = text
        kinds[row["method"]] = row.get("kind", "")
    print("| method | kind | query NLL (nats) | 5-way prototype accuracy | novelty ratio | Frechet distance |")
    print("|---|---|---|---|---|---|")
    for method, metrics in cells.items():
        print(f"| {LABELS.get(method, method)} | {kinds[method]} | {metrics.get('query_nll_nats', '—')} | "
              f"{metrics.get('prototype_accuracy', '—')} | {metrics.get('novelty_ratio', '—')} | "
              f"{metrics.get('frechet_distance', '—')} |")
    background = payload.get("cgan_background")
    if background:
        print(f"\nCGAN on its {background['classes']} background classes: {background['accuracy']:.1%} of samples "
              f"classified as the class asked for (feature net on real held-out images: "
              f"{background['holdout_accuracy']:.1%}), novelty ratio {background['novelty_ratio']:.2f}.")
    for target in payload.get("targets", []):
        verdict = {True: "holds", False: "does not hold", None: "not measured"}[target["holds"]]
        print(f"- {target['target']}: **{verdict}** ({target['detail']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
