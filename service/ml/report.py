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


def markdown(report: dict) -> str:
    info = report["checkpoint"]
    lines = [
        f"# Evaluation of `{info['version']}`",
        "",
        f"sha256 `{info['sha256']}`; {info['test_clips']} held-out test clips"
        f"{' (quick run)' if info['quick'] else ''}.",
        "",
        "| metric | value | target | met |",
        "| --- | --- | --- | --- |",
        *(
            f"| {t['metric']} | {_format(t['value'])} | {t['target']} | {'yes' if t['met'] else 'NO'} |"
            for t in report["targets"]
        ),
        "",
    ]
    for section in ("retrieval", "reconstruction", "conditioning", "diversity_fidelity"):
        lines += [f"## {section}", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_format(v)} |" for k, v in report[section].items()]
        lines.append("")
    lines += [
        "## retrieval by family (family precision@10 of the family's queries)",
        "",
        "| family | held-out GM program | training-program queries | held-out-program queries |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {family} | {row['held_out_program']} | {_format(row['training_program_queries'])} "
        f"| {_format(row['held_out_program_queries'])} |"
        for family, row in report["retrieval_by_family"].items()
    ]
    lines += [
        "",
        "## style transfer (against strength)",
        "",
        "| strength | neighbour family rate | source pattern rate |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {p['strength']} | {p['neighbour_family_rate']:.3f} | {p['source_pattern_rate']:.3f} |"
        for p in report["style_transfer"]["curve"]
    ]
    lines += ["", "## variants", "", "| variance | mean cosine to source |", "| --- | --- |"]
    lines += [f"| {p['variance']} | {p['mean_cosine_to_source']:.3f} |" for p in report["variants"]["curve"]]
    return "\n".join(lines) + "\n"


def write_plots(report: dict, history: list[dict], out_dir: Path) -> list[Path]:
    """The training curve and the transfer / variants curves as PNGs; none without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    out_dir = Path(out_dir)
    return [
        plot_training_curve(history, out_dir / "training-curve.png"),
        plot_curves(report, out_dir / "transfer-variants.png"),
        plot_retrieval_by_family(report, out_dir / "retrieval-by-family.png"),
    ]


def plot_training_curve(history: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis, phase, keys in (
        (axes[0], "autoencoder", ("train_loss", "val_log_mel_l1", "val_family_accuracy")),
        (axes[1], "denoiser", ("train_loss", "val_v_mse")),
    ):
        rows = [row for row in history if row["phase"] == phase]
        for key in keys:
            axis.plot([row["step"] for row in rows], [row[key] for row in rows], label=key)
        axis.set_title(phase)
        axis.set_xlabel("step")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_curves(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    curve = report["style_transfer"]["curve"]
    strengths = [p["strength"] for p in curve]
    axes[0].plot(strengths, [p["neighbour_family_rate"] for p in curve], "o-", label="probe hears neighbour's family")
    axes[0].plot(strengths, [p["source_pattern_rate"] for p in curve], "s-", label="pattern closer to source")
    axes[0].axhline(0.7, color="grey", linestyle=":")
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["retrieval_by_family"]
    families = list(rows)
    positions = range(len(families))
    figure, axis = plt.subplots(figsize=(10, 3.5))
    for offset, key, label in (
        (-0.2, "training_program_queries", "queries on training programs"),
        (0.2, "held_out_program_queries", "queries on the held-out program"),
    ):
        values = [rows[family][key] or 0.0 for family in families]
        axis.bar([p + offset for p in positions], values, width=0.4, label=label)
    axis.axhline(0.9, color="grey", linestyle=":", label="target (all queries)")
    axis.set_xticks(list(positions), families, rotation=30, ha="right")
    axis.set_ylabel("family precision@10")
    axis.set_ylim(0, 1)
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
