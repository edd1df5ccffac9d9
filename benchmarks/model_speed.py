"""Model speed on this machine: encode, decode and generate per 4 s clip at batch 1 and 8.

Run: ``python benchmarks/model_speed.py [CHECKPOINT] [--threads N]`` (default: the shipped
checkpoint, 2 threads). Prints a table with the real-time factor (audio seconds per wall
second) next to the targets and writes ``benchmarks/results/model_speed.json``.

Targets (the model issue): encode <= 20 ms per 4 s clip; generate + decode >= 50x real time at batch 8;
generate + decode <= 200 ms for a single clip at the default steps.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from service.ml.pipeline import Pipeline, default_checkpoint_path

RESULTS = Path(__file__).parent / "results" / "model_speed.json"


def best_of(function, repeats: int = 5) -> float:
    function()  # warm-up
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return min(timings)


def measure(pipeline: Pipeline, batch: int) -> dict:
    config = pipeline.config
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(config.n_samples).astype(np.float32) * 0.1 for _ in range(batch)]
    prompts = ["piano, minor, 90 bpm"] * batch
    seeds = list(range(batch))
    latents = pipeline.generate(prompts, seeds)
    encode = best_of(lambda: pipeline.encode_batch(clips, config.sample_rate))
    generate = best_of(lambda: pipeline.generate(prompts, seeds))
    decode = best_of(lambda: pipeline.decode(latents))
    audio_seconds = batch * config.clip_seconds
    return {
        "batch": batch,
        "encode_ms_per_clip": 1000 * encode / batch,
        "generate_ms_per_clip": 1000 * generate / batch,
        "decode_ms_per_clip": 1000 * decode / batch,
        "generate_decode_ms_per_batch": 1000 * (generate + decode),
        "generate_decode_real_time_factor": audio_seconds / (generate + decode),
        "encode_real_time_factor": audio_seconds / encode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=str(default_checkpoint_path()))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipeline = Pipeline.load(args.checkpoint)
    rows = [measure(pipeline, batch) for batch in (1, 8)]
    print(
        f"{pipeline.version}: {pipeline.config.default_steps} steps, "
        f"guidance {pipeline.config.default_guidance}, "
        f"{pipeline.config.griffin_lim_iters} Griffin-Lim iterations, {args.threads} threads"
    )
    print("batch  encode ms/clip  generate ms/clip  decode ms/clip  gen+dec ms/batch  gen+dec x real time")
    for row in rows:
        print(
            f"{row['batch']:>5}  {row['encode_ms_per_clip']:>14.1f}  {row['generate_ms_per_clip']:>16.1f}  "
            f"{row['decode_ms_per_clip']:>14.1f}  {row['generate_decode_ms_per_batch']:>16.1f}  "
            f"{row['generate_decode_real_time_factor']:>18.1f}"
        )
    single, eight = rows
    targets = {
        "encode_ms_per_clip<=20": single["encode_ms_per_clip"] <= 20,
        "generate_decode_x_real_time_batch8>=50": eight["generate_decode_real_time_factor"] >= 50,
        "generate_decode_ms_single<=200": single["generate_decode_ms_per_batch"] <= 200,
    }
    for name, met in targets.items():
        print(f"{name}: {'met' if met else 'NOT met'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "checkpoint": pipeline.version,
                "sha256": pipeline.sha256,
                "threads": args.threads,
                "machine": platform.processor() or platform.machine(),
                "rows": rows,
                "targets": targets,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
