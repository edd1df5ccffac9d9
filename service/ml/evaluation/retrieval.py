"""Cross-bank retrieval: family precision@5 of the model's latent and of the DSP baseline, side by side."""

from __future__ import annotations

import numpy as np

from service.ml.data.instruments import FAMILY_NAMES
from service.ml.evaluation import metrics
from service.ml.evaluation.sets import ClipSet

K = 5


def cross_bank(sets: dict[str, ClipSet | str]) -> dict:
    return {name: (one_set(s) if isinstance(s, ClipSet) else {"unavailable": s}) for name, s in sets.items()}


def one_set(clips: ClipSet) -> dict:
    families = clips.column("family")
    model = metrics.neighbour_precision(clips.latents, families, K)
    baseline = metrics.neighbour_precision(clips.baseline, families, K)
    return {
        "clips": len(families),
        "families": len(set(families)),
        "dropped_programs": {str(k): v for k, v in sorted(clips.dropped_programs.items())},
        "family_precision_at_5": float(model.mean()),
        "baseline_family_precision_at_5": float(baseline.mean()),
        "ratio_to_baseline": float(model.mean() / max(baseline.mean(), 1e-9)),
        "by_family": {
            family: {
                "model": float(model[clips.families == family].mean()),
                "baseline": float(baseline[clips.families == family].mean()),
            }
            for family in FAMILY_NAMES
            if np.any(clips.families == family)
        },
    }
