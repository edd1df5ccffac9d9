"""Generation-side quality: reconstruction, cycle, conditioning, diversity, style transfer, variants,
reproducibility. "Real" audio is the in-domain set (training banks, melodies never trained on)."""

from __future__ import annotations

import io
import itertools

import numpy as np
import soundfile

from service.ml.evaluation import metrics
from service.ml.evaluation.sets import ClipSet, encode
from service.ml.pipeline import Pipeline
from service.ml.training.batches import log_mel

BATCH = 32


def joint_latents(pipeline: Pipeline, clips: ClipSet) -> np.ndarray:
    return np.stack([pipeline.encode_joint(a, pipeline.config.sample_rate) for a in clips.audio])


def decode_all(pipeline: Pipeline, joint: np.ndarray) -> np.ndarray:
    return np.concatenate([pipeline.decode(joint[i : i + BATCH]) for i in range(0, len(joint), BATCH)])


def reconstruction(pipeline: Pipeline, clips: ClipSet, joint: np.ndarray) -> dict:
    decoded = np.concatenate([pipeline.decode_log_mel(joint[i : i + BATCH]) for i in range(0, len(joint), BATCH)])
    original = log_mel(clips.audio, pipeline.frontend).numpy()
    l1 = float(np.abs(decoded - original).mean())
    baseline = float(np.abs(pipeline.autoencoder.mel_mean.numpy()[None] - original).mean())
    audio = decode_all(pipeline, joint)
    heard = encode(pipeline, audio)
    return {
        "log_mel_l1": l1,
        "mean_spectrum_baseline_l1": baseline,
        "log_mel_l1_ratio": l1 / baseline,
        "log_mel_l1_after_griffin_lim": float(np.abs(log_mel(audio, pipeline.frontend).numpy() - original).mean()),
        "cycle_cosine": float(np.mean(metrics.cosine(heard, pipeline.searchable(joint)))),
    }


def conditioning(pipeline: Pipeline, probe: metrics.LinearProbe, prompts_per_family: int) -> dict:
    """Generate for every family; the probe (trained on real latents) reads the decoded-and-re-encoded audio."""
    families = probe.classes
    prompts = [f for f in families for _ in range(prompts_per_family)]
    generated = pipeline.generate(prompts, list(range(len(prompts))))
    heard = encode(pipeline, decode_all(pipeline, generated))
    return {
        "family_accuracy": probe.accuracy(heard, prompts),
        "family_accuracy_latent": probe.accuracy(pipeline.searchable(generated), prompts),
        "generations": len(prompts),
    }


def diversity(pipeline: Pipeline, clips: ClipSet, seeds: int) -> dict:
    """Spread of generations sharing a prompt against the spread of real clips sharing those tags."""
    groups: dict[str, list[int]] = {}
    for i, family in enumerate(clips.column("family")):
        groups.setdefault(family, []).append(i)
    real = np.nanmean([metrics.mean_pairwise_distance(clips.latents[idx]) for idx in groups.values() if len(idx) > 1])
    generated = [
        metrics.mean_pairwise_distance(
            pipeline.searchable(pipeline.generate([f] * seeds, [1000 * n + s for s in range(seeds)]))
        )
        for n, f in enumerate(groups)
    ]
    return {
        "generated_same_family_mean_pairwise_distance": float(np.mean(generated)),
        "real_same_family_mean_pairwise_distance": float(real),
        "diversity_ratio": float(np.mean(generated) / real),
    }


def style_transfer(pipeline: Pipeline, clips: ClipSet, joint: np.ndarray, probe, pairs: int, strengths) -> dict:
    chosen = _pairs(clips, pairs)
    curve = []
    for strength in strengths:
        outputs = np.stack([pipeline.transfer(joint[s], clips.latents[n], strength) for s, n in chosen])
        audio = decode_all(pipeline, outputs)
        families = probe.predict(encode(pipeline, audio))
        curve.append(
            {
                "strength": float(strength),
                "neighbour_family_rate": float(
                    np.mean([families[i] == clips.labels[n].family for i, (_, n) in enumerate(chosen)])
                ),
                "source_pattern_rate": float(
                    np.mean([_closer_to_source(pipeline, audio[i], clips, s, n) for i, (s, n) in enumerate(chosen)])
                ),
            }
        )
    default = min(curve, key=lambda point: abs(point["strength"] - pipeline.config.default_strength))
    return {"pairs": len(chosen), "default_strength": default["strength"], "at_default": default, "curve": curve}


def variants(pipeline: Pipeline, joint: np.ndarray, variances) -> dict:
    curve = []
    for variance in variances:
        cosines = [
            metrics.cosine(
                pipeline.searchable(pipeline.variants(z, variance, [1, 2])), pipeline.searchable(z)[None]
            ).mean()
            for z in joint
        ]
        curve.append({"variance": float(variance), "mean_cosine_to_source": float(np.mean(cosines))})
    values = [point["mean_cosine_to_source"] for point in curve]
    return {"curve": curve, "monotonic": bool(all(b <= a + 1e-6 for a, b in itertools.pairwise(values)))}


def reproducibility(pipeline: Pipeline) -> dict:
    """Same seed, params and model: byte-identical latents and WAV files, twice in this process."""
    runs = []
    for _ in range(2):
        joint = pipeline.generate(["piano, minor", "brass, fast"], [7, 8], steps=10)
        runs.append((joint.tobytes(), _wav_bytes(pipeline.decode(joint), pipeline.config.sample_rate)))
    return {"latents_identical": runs[0][0] == runs[1][0], "wav_identical": runs[0][1] == runs[1][1]}


def _wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    files = []
    for clip in audio:
        buffer = io.BytesIO()
        soundfile.write(buffer, clip, rate, format="WAV", subtype="PCM_16")
        files.append(buffer.getvalue())
    return b"".join(files)


def _pairs(clips: ClipSet, count: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(0)
    pairs: list[tuple[int, int]] = []
    for source, style in itertools.product(rng.permutation(len(clips.labels)), rng.permutation(len(clips.labels))):
        a, b = clips.labels[source], clips.labels[style]
        if a.family != b.family and a.scene_id != b.scene_id and all(source != s for s, _ in pairs):
            pairs.append((int(source), int(style)))
        if len(pairs) == count:
            break
    return pairs


def _closer_to_source(pipeline: Pipeline, output: np.ndarray, clips: ClipSet, source: int, style: int) -> bool:
    rate = pipeline.config.sample_rate
    out_log_mel = log_mel(output[None], pipeline.frontend).numpy()[0]

    def similarity(index: int) -> float:
        reference = log_mel(clips.audio[index][None], pipeline.frontend).numpy()[0]
        chroma = metrics.correlation(metrics.chroma(output, rate), metrics.chroma(clips.audio[index], rate))
        onsets = metrics.correlation(metrics.onset_envelope(out_log_mel), metrics.onset_envelope(reference))
        return (chroma + onsets) / 2

    return similarity(source) > similarity(style)
