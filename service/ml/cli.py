"""``soundalike corpus | train | eval``: click commands added to the top-level CLI by ``register``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from service.ml.config import PRESETS
from service.ml.data.corpus import SPLITS

WORKERS = click.option(
    "--workers", type=int, default=2, show_default=True, help="processes rendering the corpus (when not cached)"
)


@click.command("corpus")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="default", show_default=True)
@click.option("--split", type=click.Choice(SPLITS), default="validation", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--wav", "wav_count", type=int, default=0, show_default=True, help="also write the first N clips as WAV")
@WORKERS
def corpus_command(preset: str, split: str, out: Path, wav_count: int, workers: int) -> None:
    """Render (or load from cache) one corpus split and write its labels, audio and sample WAVs.

    The default preset also reads the WebAudioFont banks of a local surikov/webaudiofontdata checkout
    (SOUNDALIKE_WAF_DIR) and the Debian SoundFonts (docs/model-card.md lists them)."""
    import soundfile

    from service.ml.data import corpus

    config = PRESETS[preset]
    clips = corpus.load(config.corpus, config.model, split, workers=workers, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    corpus.save(clips, out / "audio.npz")
    with open(out / "labels.jsonl", "w") as handle:
        handle.writelines(json.dumps(asdict(label)) + "\n" for label in clips.labels)
    for index in range(min(wav_count, len(clips.labels))):
        soundfile.write(
            out / f"{index:05d}-{clips.labels[index].family}.wav",
            clips.audio[index],
            config.model.sample_rate,
        )
    click.echo(f"{len(clips.labels)} clips of split {split!r} written to {out}")


@click.command("train")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="default", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
@WORKERS
def train_command(preset: str, out: Path, seed: int, progress: bool, threads: int | None, workers: int) -> None:
    """Train a preset; re-running the same command resumes from <out>.state."""
    from service.ml.training import train

    path = train(preset=preset, out=out, seed=seed, progress=progress, threads=threads, workers=workers)
    click.echo(f"checkpoint written to {path}")


@click.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="directory for report.json, report.md and the PNG plots (default: next to the checkpoint)",
)
@click.option("--quick", is_flag=True, help="fewer generations and pairs (for tests and smoke runs)")
def eval_command(checkpoint: Path, out: Path | None, quick: bool) -> None:
    """Evaluate a checkpoint (cross-bank retrieval next to the DSP baseline, robustness, long files, out-of-domain
    audio, generation); writes a JSON report, a markdown summary and plots."""
    from service.ml import checkpoint as checkpoints
    from service.ml.evaluation import evaluate
    from service.ml.evaluation.report import write_plots, write_report

    report = evaluate(checkpoint, quick=quick)
    out_dir = out or checkpoint.parent / f"{checkpoint.stem}-eval"
    json_path, markdown_path = write_report(report, out_dir)
    plots = write_plots(report, checkpoints.read(checkpoint)["history"], out_dir)
    click.echo(markdown_path.read_text())
    click.echo(f"report written to {', '.join(str(p) for p in [json_path, markdown_path, *plots])}")


def register(group: click.Group) -> None:
    """Add the model commands to the top-level ``soundalike`` group."""
    for command in (corpus_command, train_command, eval_command):
        group.add_command(command)
