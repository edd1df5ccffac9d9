"""``soundalike eval``: measure a checkpoint on the held-out test split.

Everything is computed here from the checkpoint and freshly rendered test
clips (melodies never seen in training, every second clip on a held-out
program); a second copy of the test split rendered with a SoundFont the model
never heard measures generalisation. Targets are the issue's, checked in
``targets``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from service.ml import corpus, metrics
from service.ml.config import CorpusConfig
from service.ml.corpus import tempo_class
from service.ml.instruments import FAMILY_NAMES, held_out_program
from service.ml.pipeline import Pipeline
from service.ml.soundfonts import UNSEEN_SOUNDFONT
from service.ml.training import log_mels

BATCH = 64


@dataclass(frozen=True)
class Budget:
    max_clips: int
    seeds_per_prompt: int
    transfer_pairs: int
    strengths: tuple[float, ...]
    variances: tuple[float, ...]
    variant_sources: int


FULL = Budget(10_000, 8, 100, (0.2, 0.4, 0.6, 0.8, 1.0), tuple(np.round(np.linspace(0, 1, 11), 2)), 40)
QUICK = Budget(48, 2, 8, (0.3, 0.6), (0.0, 0.3, 0.6, 1.0), 6)


@dataclass
class EvalSet:
    latents: np.ndarray
    labels: list[corpus.ClipLabels]
    audio: np.ndarray
    log_mel: np.ndarray

    def column(self, name: str) -> list:
        if name == "tempo":
            return [tempo_class(label.bpm) for label in self.labels]
        return [getattr(label, name) for label in self.labels]


def evaluate(path: str | Path, quick: bool = False) -> dict:
    torch.manual_seed(0)
    pipeline = Pipeline.load(path)
    budget = QUICK if quick else FULL
    test = load_set(pipeline, None, budget)
    unseen = load_set(pipeline, UNSEEN_SOUNDFONT, budget)
    probes = {name: metrics.LinearProbe(test.latents, test.column(name)) for name in ("family", "tempo", "mode")}
    family_hits = metrics.neighbour_precision(test.latents, test.column("family"))
    report = {
        "checkpoint": {
            "path": str(path),
            "sha256": pipeline.sha256,
            "version": pipeline.version,
            "quick": quick,
            "test_clips": len(test.labels),
            "unseen_soundfont": UNSEEN_SOUNDFONT,
        },
        "retrieval": retrieval(test, unseen, family_hits),
        "retrieval_by_family": retrieval_by_family(test, family_hits),
        "reconstruction": reconstruction(pipeline, test),
        "conditioning": conditioning(pipeline, test, probes, budget),
        "diversity_fidelity": diversity_fidelity(pipeline, test, budget),
        "style_transfer": style_transfer(pipeline, test, probes["family"], budget),
        "variants": variants(pipeline, test, budget),
    }
    report["targets"] = targets(report, pipeline.config.default_strength)
    return report


def load_set(pipeline: Pipeline, soundfont: str | None, budget: Budget) -> EvalSet:
    config = CorpusConfig(**pipeline.metadata["corpus_config"])
    clips = corpus.load(config, pipeline.config, "test", soundfont)
    if len(clips.labels) > budget.max_clips:
        clips = clips.subset(np.arange(budget.max_clips))
    latents = encode_clips(pipeline, clips.audio)
    return EvalSet(latents, clips.labels, clips.audio, log_mels(clips.audio, pipeline.frontend).numpy())


def encode_clips(pipeline: Pipeline, audio: np.ndarray) -> np.ndarray:
    rate = pipeline.config.sample_rate
    return np.concatenate(
        [pipeline.encode_batch(list(audio[i : i + BATCH]), rate) for i in range(0, len(audio), BATCH)]
    )


def decode_all(pipeline: Pipeline, latents: np.ndarray) -> np.ndarray:
    return np.concatenate([pipeline.decode(latents[i : i + BATCH]) for i in range(0, len(latents), BATCH)])


def decode_encode(pipeline: Pipeline, latents: np.ndarray) -> np.ndarray:
    """Latents -> audio -> latents: what a listener's copy of a generation encodes to."""
    return encode_clips(pipeline, decode_all(pipeline, latents))


def retrieval(test: EvalSet, unseen: EvalSet, family_hits: np.ndarray) -> dict:
    """``family_hits``: each test clip's family precision@10 (``metrics.neighbour_precision``)."""
    held_out = held_out_mask(test)
    report = {
        "family_precision_at_10": float(family_hits.mean()),
        "tempo_precision_at_10": metrics.precision_at_k(test.latents, test.column("tempo")),
        "mode_precision_at_10": metrics.precision_at_k(test.latents, test.column("mode")),
        "family_precision_at_10_training_program_queries": float(family_hits[~held_out].mean()),
        "family_precision_at_10_held_out_program_queries": float(family_hits[held_out].mean()),
    }
    report["unseen_soundfont_family_precision_at_10"] = metrics.precision_at_k(unseen.latents, unseen.column("family"))
    report["unseen_soundfont_queries_vs_seen_index_family_precision_at_10"] = metrics.precision_at_k(
        test.latents, test.column("family"), queries=unseen.latents, query_labels=unseen.column("family")
    )
    report["chance_family_precision"] = 1.0 / len(set(test.column("family")))
    return report


def retrieval_by_family(test: EvalSet, family_hits: np.ndarray) -> dict:
    """Family precision@10 of each family's training-program and held-out-program queries (None: no such query)."""
    families, held_out = np.array(test.column("family"), dtype=object), held_out_mask(test)

    def mean_over(mask: np.ndarray) -> float | None:
        return float(family_hits[mask].mean()) if mask.any() else None

    return {
        family: {
            "held_out_program": held_out_program(family),
            "training_program_queries": mean_over((families == family) & ~held_out),
            "held_out_program_queries": mean_over((families == family) & held_out),
        }
        for family in FAMILY_NAMES
    }


def held_out_mask(test: EvalSet) -> np.ndarray:
    return np.array([label.held_out_program for label in test.labels])


def reconstruction(pipeline: Pipeline, test: EvalSet) -> dict:
    decoded = np.concatenate(
        [pipeline.decode_log_mel(test.latents[i : i + BATCH]) for i in range(0, len(test.latents), BATCH)]
    )
    l1 = float(np.abs(decoded - test.log_mel).mean())
    train_mean_spectrum = pipeline.autoencoder.mel_mean.numpy()[None]
    baseline = float(np.abs(train_mean_spectrum - test.log_mel).mean())
    own_mean = float(np.abs(test.log_mel.mean(axis=2, keepdims=True) - test.log_mel).mean())
    audio = decode_all(pipeline, test.latents)
    cycled = encode_clips(pipeline, audio)
    after_griffin_lim = log_mels(audio, pipeline.frontend).numpy()
    return {
        "log_mel_l1": l1,
        "mean_spectrum_baseline_l1": baseline,
        "log_mel_l1_ratio": l1 / baseline,
        "clip_own_mean_spectrum_l1": own_mean,
        "log_mel_l1_after_griffin_lim": float(np.abs(after_griffin_lim - test.log_mel).mean()),
        "cycle_cosine": float(np.mean(_cosine(cycled, test.latents))),
    }


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _label_prompt(label: corpus.ClipLabels) -> str:
    return f"{label.family}, {label.mode}, {label.bpm} bpm, {'drums' if label.drums else 'no drums'}"


def conditioning(pipeline: Pipeline, test: EvalSet, probes: dict, budget: Budget) -> dict:
    """Generate for every family x mode x tempo class; the probes read the decoded-and-re-encoded audio."""
    rows = [
        (family, mode, tempo)
        for family in sorted(set(test.column("family")))
        for mode in ("major", "minor")
        for tempo in ("slow", "medium", "fast")
    ]
    rows = [row for i, row in enumerate(rows) if budget.seeds_per_prompt > 2 or i % 3 == 0]
    prompts = [", ".join(row) for row in rows for _ in range(max(1, budget.seeds_per_prompt // 4))]
    wanted = [row for row in rows for _ in range(max(1, budget.seeds_per_prompt // 4))]
    generated = pipeline.generate(prompts, list(range(len(prompts))))
    heard = decode_encode(pipeline, generated)
    report = {}
    for column, name in enumerate(("family", "mode", "tempo")):
        truth = [row[column] for row in wanted]
        report[f"{name}_accuracy"] = probes[name].accuracy(heard, truth)
        report[f"{name}_accuracy_latent"] = probes[name].accuracy(generated, truth)
    folds = np.array([label.melody_id % 2 for label in test.labels]) == 0
    for name in ("family", "mode", "tempo"):
        labels = np.array(test.column(name), dtype=object)
        probe = metrics.LinearProbe(test.latents[folds], list(labels[folds]))
        report[f"probe_{name}_accuracy_on_real_other_half"] = probe.accuracy(test.latents[~folds], list(labels[~folds]))
    report["generations"] = len(prompts)
    return report


def diversity_fidelity(pipeline: Pipeline, test: EvalSet, budget: Budget) -> dict:
    groups: dict[tuple, list[int]] = {}
    for i, label in enumerate(test.labels):
        groups.setdefault((label.family, label.mode, tempo_class(label.bpm)), []).append(i)
    real_groups = [indices for indices in groups.values() if len(indices) >= 2]
    real = np.nanmean([metrics.mean_pairwise_distance(test.latents[indices]) for indices in real_groups])
    keys = [key for key, indices in groups.items() if len(indices) >= 2][: max(4, len(real_groups))]
    seeds = max(2, budget.seeds_per_prompt)
    generated_distances = []
    for n, key in enumerate(keys):
        latents = pipeline.generate([", ".join(key)] * seeds, [1000 * n + s for s in range(seeds)])
        generated_distances.append(metrics.mean_pairwise_distance(latents))
    halves = np.array([label.melody_id % 2 for label in test.labels]) == 0
    real_a, real_b = test.latents[halves], test.latents[~halves]
    fake = pipeline.generate(
        [_label_prompt(test.labels[i]) for i in np.flatnonzero(~halves)],
        [50_000 + i for i in range(int((~halves).sum()))],
    )
    generated = float(np.mean(generated_distances))
    return {
        "generated_same_tags_mean_pairwise_distance": generated,
        "real_same_tags_mean_pairwise_distance": float(real),
        "diversity_ratio": generated / float(real),
        "frechet_generated_vs_real": metrics.frechet_distance(fake, real_a),
        "frechet_real_vs_real_baseline": metrics.frechet_distance(real_b, real_a),
        "tag_groups": len(keys),
    }


def transfer_pairs(test: EvalSet, count: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(0)
    pairs = []
    for source, style in itertools.product(rng.permutation(len(test.labels)), rng.permutation(len(test.labels))):
        a, b = test.labels[source], test.labels[style]
        if a.family != b.family and a.melody_id != b.melody_id and all(source != s for s, _ in pairs):
            pairs.append((int(source), int(style)))
        if len(pairs) == count:
            break
    return pairs


def style_transfer(pipeline: Pipeline, test: EvalSet, family_probe: metrics.LinearProbe, budget: Budget) -> dict:
    pairs = transfer_pairs(test, budget.transfer_pairs)
    curve = []
    for strength in budget.strengths:
        outputs = np.stack(
            [pipeline.transfer(test.latents[s], test.latents[n], strength, seed=i) for i, (s, n) in enumerate(pairs)]
        )
        audio = pipeline.decode(outputs)
        heard = encode_clips(pipeline, audio)
        families = family_probe.predict(heard)
        took_style = [families[i] == test.labels[n].family for i, (_, n) in enumerate(pairs)]
        closer = [_closer_to_source(pipeline, audio[i], test, s, n) for i, (s, n) in enumerate(pairs)]
        curve.append(
            {
                "strength": strength,
                "neighbour_family_rate": float(np.mean(took_style)),
                "source_pattern_rate": float(np.mean(closer)),
            }
        )
    default = min(curve, key=lambda point: abs(point["strength"] - pipeline.config.default_strength))
    return {
        "pairs": len(pairs),
        "default_strength": default["strength"],
        "at_default": default,
        "curve": curve,
    }


def _closer_to_source(pipeline: Pipeline, output: np.ndarray, test: EvalSet, source: int, style: int) -> bool:
    rate = pipeline.config.sample_rate
    out_log_mel = log_mels(output[None], pipeline.frontend).numpy()[0]

    def similarity(index: int) -> float:
        chroma = metrics.correlation(metrics.chroma(output, rate), metrics.chroma(test.audio[index], rate))
        onsets = metrics.correlation(metrics.onset_envelope(out_log_mel), metrics.onset_envelope(test.log_mel[index]))
        return (chroma + onsets) / 2

    return similarity(source) > similarity(style)


def variants(pipeline: Pipeline, test: EvalSet, budget: Budget) -> dict:
    sources = test.latents[: budget.variant_sources]
    curve = []
    for variance in budget.variances:
        cosines = [_cosine(pipeline.variants(z, variance, [1, 2]), z[None]).mean() for z in sources]
        curve.append({"variance": float(variance), "mean_cosine_to_source": float(np.mean(cosines))})
    values = [point["mean_cosine_to_source"] for point in curve]
    return {"curve": curve, "monotonic": bool(all(b <= a for a, b in zip(values, values[1:], strict=False)))}


TARGETS = (
    ("retrieval", "family_precision_at_10", ">=", 0.90),
    ("reconstruction", "log_mel_l1_ratio", "<=", 0.5),
    ("reconstruction", "cycle_cosine", ">=", 0.90),
    ("conditioning", "family_accuracy", ">=", 0.85),
    ("diversity_fidelity", "diversity_ratio", ">=", 0.5),
)


def targets(report: dict, default_strength: float) -> list[dict]:
    checks = [
        {
            "metric": f"{section}.{name}",
            "value": report[section][name],
            "target": f"{op} {bound}",
            "met": report[section][name] >= bound if op == ">=" else report[section][name] <= bound,
        }
        for section, name, op, bound in TARGETS
    ]
    at_default = report["style_transfer"]["at_default"]
    for name in ("neighbour_family_rate", "source_pattern_rate"):
        checks.append(
            {
                "metric": f"style_transfer.{name}@{at_default['strength']}",
                "value": at_default[name],
                "target": ">= 0.7",
                "met": at_default[name] >= 0.7,
            }
        )
    checks.append(
        {
            "metric": "variants.monotonic",
            "value": report["variants"]["monotonic"],
            "target": "true",
            "met": report["variants"]["monotonic"],
        }
    )
    return checks
