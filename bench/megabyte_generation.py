"""MEGABYTE generation speed: bytes per second of a MEGABYTE model against a byte-level model of equal size.

Both are built from the Transformer seed with --layers blocks (default 8; MEGABYTE splits them 1:1 between its
global and local stacks) and sized into the same 4M-8M parameter band, then trained for --budget seconds each
(default 60) on the benchmark corpus read as bytes: rows of 8 x 64 = 512 bytes, --rows per batch (default 16), so
both see the same text per step; MEGABYTE's patch size is --patch (default 8), the paper's generation setting. Each then
generates --bytes bytes (default 1024) with a cache in every block (`primer_search.lm.sampling`, batch 1; the two
taking turns for three rounds, median): the byte-level model steps all its blocks per byte, MEGABYTE its global
stack once per patch and its local stack once per byte.
Yu et al. (2023) report 1.42x the throughput of a byte-level Transformer of the same size (93 s against 132 s
for 8,192 bytes).

Memory: a training step of the byte-level model holds its attention scores over 512 positions for every block,
row and head, so it is the step that bounds the benchmark's memory (64 rows: an estimated 39 GiB, 16 GB seen);
each model's estimate (`Architecture.training_memory_bytes`) is printed before it trains, and the process's peak
resident memory at the end.

    python bench/megabyte_generation.py [--budget 60] [--layers 8] [--patch 8] [--bytes 1024] [--rows 16] [--set ...]

The last line printed is the headline: the ratio of bytes per second, MEGABYTE over byte-level.
"""

from __future__ import annotations

import resource

from macro_common import config, paired_step_seconds, parse_args, train

from primer_search.lm.sampling import Sampler
from primer_search.program.macro_options import MacroOptions
from primer_search.program.seeds import load_seed

ROW_BYTES = 512


def main() -> None:
    args = parse_args(__doc__, budget=60.0, patch=8, bytes=1024, rows=16)
    # MEGABYTE reads the configured text as bytes, in rows of patch x sequence_length bytes
    megabyte_cfg = config(args, [f"data.sequence_length={ROW_BYTES // args.patch}",
                                 f"data.batch_tokens={ROW_BYTES // args.patch * args.rows}"])
    bytes_cfg = config(args, ["data.tokenizer=bytes", "model.vocab_size=258", f"data.sequence_length={ROW_BYTES}",
                              f"data.batch_tokens={ROW_BYTES * args.rows}"])
    seed = load_seed("transformer")
    megabyte = seed.replace(macro_options=MacroOptions.from_dict(
        {"megabyte": {"enabled": True, "patch_size": args.patch}}))
    trained = {label: train(dna, cfg, label)
               for label, dna, cfg in (("byte-level", seed, bytes_cfg), ("MEGABYTE", megabyte, megabyte_cfg))}
    timed = paired_step_seconds({label: Sampler(model, max_length=args.bytes + 1)
                                 for label, (model, _, _) in trained.items()}, args.bytes, rounds=3)
    speeds = {}
    for label, (model, arch, metrics) in trained.items():
        speeds[label] = 1.0 / timed[label][0]
        print(f"{label}: {speeds[label]:.0f} bytes/s generating {args.bytes} bytes "
              f"({arch.sampling_flops_per_token(metrics['unit']) / 1e6:.2f} MFLOPs/byte)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20          # KiB on Linux
    print(f"peak resident memory of the benchmark: {peak:.1f} GiB")
    print(f"MEGABYTE generation: {speeds['MEGABYTE'] / speeds['byte-level']:.2f}x the bytes/s of a byte-level "
          f"model of equal size (paper: 1.42x)")


if __name__ == "__main__":
    main()
