"""Evaluation report files: JSON, a markdown summary and plots (plots need matplotlib, the dev extra)."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2))
    markdown_path = out_dir / "report.md"
    markdown_path.write_text(markdown(report))
    return json_path, markdown_path


def _format(value) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(_format(v) for v in row) + " |" for row in rows),
        "",
    ]


def markdown(report: dict) -> str:
    info = report["checkpoint"]
    lines = [
        f"# Evaluation of `{info['version']}`",
        "",
        f"sha256 `{info['sha256']}`{' (quick run)' if info['quick'] else ''}; robustness measured on "
        f"`{info['robustness_set']}` clips.",
        "",
        *_table(
            ("metric", "value", "target", "met"),
            [(t["metric"], t["value"], t["target"], "yes" if t["met"] else "NO") for t in report["targets"]],
        ),
        "## Retrieval: family precision@5, model and DSP baseline (mean + std of 64 log-mel bands)",
        "",
    ]
    retrieval_rows = [
        (
            name,
            row.get("clips"),
            row.get("family_precision_at_5"),
            row.get("baseline_family_precision_at_5"),
            row.get("ratio_to_baseline"),
            row.get("unavailable", ""),
        )
        for name, row in {**report["cross_bank"], "validation (training banks)": report["in_domain_retrieval"]}.items()
    ]
    lines += _table(("clip set", "clips", "model", "baseline", "ratio", "note"), retrieval_rows)
    lines += ["## Robustness: the transformed clip searched among the originals", ""]
    lines += _table(
        ("transform", "finds itself", "median self-similarity", "baseline finds itself"),
        [
            (name, row["self_nearest_rate"], row["median_self_similarity"], row["baseline_self_nearest_rate"])
            for name, row in report["robustness"].items()
            if isinstance(row, dict)
        ],
    )
    lines += ["## Long files (30 s of one family)", ""]
    lines += _table(
        ("file", "files", "nearest family right", "baseline"),
        [
            (k, v["files"], v["nearest_family_rate"], v["baseline_nearest_family_rate"])
            for k, v in report["long_files"].items()
        ],
    )
    lines += ["## Out of domain", ""]
    lines += _table(("metric", "value"), list(report["out_of_domain"].items()))
    for section in ("reconstruction", "conditioning", "diversity", "reproducibility"):
        lines += [f"## {section}", ""] + _table(("metric", "value"), list(report[section].items()))
    lines += ["## Style transfer (against strength)", ""]
    lines += _table(
        ("strength", "probe hears the neighbour's family", "pattern closer to the source"),
        [
            (p["strength"], p["neighbour_family_rate"], p["source_pattern_rate"])
            for p in report["style_transfer"]["curve"]
        ],
    )
    lines += ["## Variants", ""]
    lines += _table(
        ("variance", "mean cosine to source"),
        [(p["variance"], p["mean_cosine_to_source"]) for p in report["variants"]["curve"]],
    )
    return "\n".join(lines)


def write_plots(report: dict, history: list[dict], out_dir: Path) -> list[Path]:
    """The training curve, cross-bank retrieval by family and the transfer / variants curves as PNGs; none
    without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        return []
    out_dir = Path(out_dir)
    return [
        plot_training_curve(history, out_dir / "training-curve.png"),
        plot_curves(report, out_dir / "transfer-variants.png"),
        plot_retrieval_by_family(report, out_dir / "retrieval-by-family.png"),
    ]


def plot_training_curve(history: list[dict], path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis, phase, keys in (
        (axes[0], "autoencoder", ("train_loss", "val_log_mel_l1", "val_family_p5", "val_self_after_250ms")),
        (axes[1], "denoiser", ("train_loss", "val_v_mse")),
    ):
        rows = [row for row in history if row["phase"] == phase]
        for key in keys:
            axis.plot([row["step"] for row in rows], [row.get(key) for row in rows], label=key)
        axis.set_title(phase)
        axis.set_xlabel("step")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_curves(report: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    curve = report["style_transfer"]["curve"]
    strengths = [p["strength"] for p in curve]
    axes[0].plot(strengths, [p["neighbour_family_rate"] for p in curve], "o-", label="probe hears neighbour's family")
    axes[0].plot(strengths, [p["source_pattern_rate"] for p in curve], "s-", label="pattern closer to source")
    axes[0].axhline(0.8, color="grey", linestyle=":")
    axes[0].set_xlabel("strength")
    axes[0].set_title("style transfer")
    axes[0].legend()
    variants = report["variants"]["curve"]
    axes[1].plot([p["variance"] for p in variants], [p["mean_cosine_to_source"] for p in variants], "o-")
    axes[1].set_xlabel("variance")
    axes[1].set_ylabel("cosine to source")
    axes[1].set_title("variants")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_retrieval_by_family(report: dict, path: Path) -> Path:
    """Family precision@5 by family on every cross-bank set: model bars, baseline ticks."""
    import matplotlib.pyplot as plt

    available = {name: row for name, row in report["cross_bank"].items() if "by_family" in row}
    figure, axes = plt.subplots(1, max(1, len(available)), figsize=(5 * max(1, len(available)), 3.5), squeeze=False)
    for axis, (name, row) in zip(axes[0], available.items(), strict=False):
        families = list(row["by_family"])
        positions = list(range(len(families)))
        axis.bar(positions, [row["by_family"][f]["model"] for f in families], label="model")
        axis.plot(positions, [row["by_family"][f]["baseline"] for f in families], "k_", markersize=14, label="baseline")
        axis.set_xticks(positions, families, rotation=45, ha="right")
        axis.set_ylim(0, 1)
        axis.set_title(
            f"{name}: P@5 {row['family_precision_at_5']:.2f} (baseline {row['baseline_family_precision_at_5']:.2f})"
        )
        axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
