"""The evaluation run: build the clip sets once, measure every section, check the targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from service.ml.data.banks import CROSS_BANK_TEST, SECOND_TEST
from service.ml.evaluation import generation, metrics, retrieval, robustness, sets
from service.ml.evaluation.sets import ClipSet
from service.ml.pipeline import Pipeline


@dataclass(frozen=True)
class Budget:
    per_family: int  # cross-bank clips per family and bank
    in_domain_clips: int
    prompts_per_family: int
    seeds_per_prompt: int
    transfer_pairs: int
    strengths: tuple[float, ...]
    variances: tuple[float, ...]
    variant_sources: int
    long_files_per_family: int
    negatives: int


FULL = Budget(20, 480, 8, 8, 100, (0.2, 0.4, 0.6, 0.8, 1.0), tuple(np.round(np.linspace(0, 1, 11), 2)), 40, 5, 30)
QUICK = Budget(3, 24, 2, 2, 8, (0.4, 0.8), (0.0, 0.3, 0.6, 1.0), 6, 1, 4)


def evaluate(path: str | Path, quick: bool = False) -> dict:
    torch.manual_seed(0)
    pipeline = Pipeline.load(path)
    budget = QUICK if quick else FULL
    cross = sets.cross_bank_sets(pipeline, budget.per_family)
    available = [s for s in cross.values() if isinstance(s, ClipSet)]
    real = sets.in_domain_set(pipeline, budget.in_domain_clips)
    robust_on = next((s for s in available if s.name == CROSS_BANK_TEST), available[0] if available else real)
    speech = robustness.speech_clips(pipeline.config.sample_rate, budget.negatives)
    probe = metrics.LinearProbe(real.latents, real.column("family"))
    joint = generation.joint_latents(pipeline, real)
    report = {
        "checkpoint": {
            "path": str(path),
            "sha256": pipeline.sha256,
            "version": pipeline.version,
            "quick": quick,
            "in_domain_clips": len(real.labels),
            "robustness_set": robust_on.name,
        },
        "cross_bank": retrieval.cross_bank(cross),
        "in_domain_retrieval": retrieval.one_set(real),
        "robustness": robustness.transforms(pipeline, robust_on),
        "long_files": robustness.long_files(pipeline, robust_on, speech, budget.long_files_per_family),
        "out_of_domain": robustness.out_of_domain(pipeline, available or [real], speech, budget.negatives),
        "reconstruction": generation.reconstruction(pipeline, real, joint),
        "conditioning": generation.conditioning(pipeline, probe, budget.prompts_per_family),
        "diversity": generation.diversity(pipeline, real, budget.seeds_per_prompt),
        "style_transfer": generation.style_transfer(
            pipeline, real, joint, probe, budget.transfer_pairs, budget.strengths
        ),
        "variants": generation.variants(pipeline, joint[: budget.variant_sources], budget.variances),
        "reproducibility": generation.reproducibility(pipeline),
    }
    report["targets"] = targets(report)
    return report


def targets(report: dict) -> list[dict]:
    checks: list[tuple[str, object, str, bool]] = []

    def at_least(metric: str, value, bound: float) -> None:
        checks.append((metric, value, f">= {bound}", value is not None and value >= bound))

    fluid = report["cross_bank"].get(CROSS_BANK_TEST, {})
    if "unavailable" in fluid:
        checks.append((f"cross_bank.{CROSS_BANK_TEST}", None, "evaluated", False))
    else:
        at_least(f"cross_bank.{CROSS_BANK_TEST}.family_precision_at_5", fluid["family_precision_at_5"], 0.75)
        at_least(f"cross_bank.{CROSS_BANK_TEST}.ratio_to_baseline", fluid["ratio_to_baseline"], 1.4)
    for name, row in report["robustness"].items():
        if isinstance(row, dict):
            at_least(f"robustness.{name}.self_nearest_rate", row["self_nearest_rate"], 0.95)
            at_least(f"robustness.{name}.median_self_similarity", row["median_self_similarity"], 0.95)
    at_least("long_files.clean.nearest_family_rate", report["long_files"]["clean"]["nearest_family_rate"], 0.9)
    at_least(
        "long_files.with_speech_or_silence.nearest_family_rate",
        report["long_files"]["with_speech_or_silence"]["nearest_family_rate"],
        0.8,
    )
    ood = report["out_of_domain"]
    for key in (
        f"{CROSS_BANK_TEST}_pass_rate",
        f"{SECOND_TEST}_pass_rate",
        "speech_fail_rate",
        "noise_fail_rate",
        "pure_tones_fail_rate",
    ):
        at_least(f"out_of_domain.{key}", ood.get(key), 0.9)
    at_least("conditioning.family_accuracy", report["conditioning"]["family_accuracy"], 0.85)
    at_least("diversity.diversity_ratio", report["diversity"]["diversity_ratio"], 0.5)
    at_least("reconstruction.cycle_cosine", report["reconstruction"]["cycle_cosine"], 0.9)
    ratio = report["reconstruction"]["log_mel_l1_ratio"]
    checks.append(("reconstruction.log_mel_l1_ratio", ratio, "<= 0.5", ratio <= 0.5))
    default = report["style_transfer"]["at_default"]
    for name in ("neighbour_family_rate", "source_pattern_rate"):
        at_least(f"style_transfer.{name}@{default['strength']}", default[name], 0.8)
    checks.append(("variants.monotonic", report["variants"]["monotonic"], "true", report["variants"]["monotonic"]))
    same = report["reproducibility"]["latents_identical"] and report["reproducibility"]["wav_identical"]
    checks.append(("reproducibility.byte_identical", same, "true", same))
    return [{"metric": m, "value": v, "target": t, "met": bool(ok)} for m, v, t, ok in checks]
