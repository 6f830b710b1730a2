"""Print the results page's generation table (markdown) from a ``bench generation`` JSON, so the figures quoted
in the docs are the benchmark's, not retyped: ``python scripts/generation_readme_table.py
docs/benchmarks/generation_fast.json [--source glyphs --shots 5 --steps 10]``.

One line per method (learned, trivial, reference) at ``--shots`` support images and ``--steps`` adaptation steps
(methods without steps -- the trivial rows, the reference, the Neural Statistician -- at 0), on the unseen
classes of ``--source``: query NLL (likelihood models only), downstream accuracy, same-alphabet accuracy,
precision, recall and memorisation ratio of the binarised draws, each mean +- standard error over classes. Then
the CGAN's fidelity on its own training classes and every target with its verdict.
"""

from __future__ import annotations

import argparse
import json

LABELS = {
    "maml": "MAML VAE", "fomaml": "first-order MAML VAE", "reptile": "Reptile VAE",
    "cavia": "CAVIA context VAE", "joint": "joint pretraining + fine-tuning",
    "scratch": "scratch on the support set",
    "statistician": "Neural-Statistician-lite (no inner loop)", "figr": "Reptile WGAN-GP (FIGR)",
    "cgan": "CGAN, new-class embedding inverted",
}
# (metric, column title, shown as a percentage)
COLUMNS = (("query_nll_nats", "query NLL (nats)", False), ("downstream_accuracy", "downstream accuracy", True),
           ("same_alphabet_accuracy", "same-alphabet accuracy", True), ("precision", "precision", False),
           ("recall", "recall", False), ("memorisation_ratio", "memorisation ratio", False))


def cell(row: dict, percent: bool) -> str:
    if percent:
        return f"{row['value']:.0%} ± {row['std_error']:.0%}"
    digits = 1 if row["metric"] == "query_nll_nats" else 2
    return f"{row['value']:.{digits}f} ± {row['std_error']:.{digits}f}"


def table_lines(payload: dict, source: str, shots: int, steps: int) -> list[str]:
    """The markdown lines of one source's table at ``shots`` and ``steps`` (a method measured without steps at
    its only step count)."""
    percent = {metric: pct for metric, _, pct in COLUMNS}
    rows = [r for r in payload["rows"]
            if r.get("source", "glyphs") == source and r["shots"] == shots and r["metric"] in percent]
    measured: dict[str, set] = {}
    for row in rows:
        measured.setdefault(row["method"], set()).add(row["steps"])
    cells: dict[str, dict[str, str]] = {}
    kinds: dict[str, str] = {}
    ways: dict[str, object] = {}
    for row in rows:
        wanted = steps if steps in measured[row["method"]] else min(measured[row["method"]])
        if row["steps"] != wanted:
            continue
        cells.setdefault(row["method"], {})[row["metric"]] = cell(row, percent[row["metric"]])
        kinds[row["method"]] = row.get("kind", "")
        if row.get("ways"):
            ways[row["metric"]] = row["ways"]
    titles = [title + (f" ({ways[metric]}-way)" if metric in ways else "") for metric, title, _ in COLUMNS]
    lines = ["| method | kind | " + " | ".join(titles) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for method, metrics in cells.items():
        lines.append(f"| {LABELS.get(method, method)} | {kinds[method]} | "
                     + " | ".join(metrics.get(metric, "—") for metric, _, _ in COLUMNS) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json")
    parser.add_argument("--source", default="glyphs", help="the unseen classes: glyphs (default) or omniglot")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    with open(args.json) as handle:
        payload = json.load(handle)
    sources = sorted({row.get("source", "glyphs") for row in payload["rows"]})
    if args.source not in sources:
        raise SystemExit(f"--source must be one of {sources} (the sources in {args.json}), got {args.source!r}")
    print("\n".join(table_lines(payload, args.source, args.shots, args.steps)))
    background = payload.get("cgan_background")
    if background:
        print(f"\nCGAN on its {background['classes']} background (training) classes -- fidelity, not few-shot "
              f"generation: {background['accuracy']:.1%} of samples classified as the class asked for (feature net "
              f"on real held-out images: {background['holdout_accuracy']:.1%}).")
    for target in payload.get("targets", []):
        verdict = {True: "holds", False: "does not hold", None: "not measured"}[target["holds"]]
        print(f"- {target['target']}: **{verdict}** ({target['detail']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
