"""Mixture-of-Depths at sampling time: a Transformer with MoD routing (capacity 12.5%, every other block) against
the same Transformer without routing.

Both are trained for the same seconds budget (--budget, default 120 s each) on the benchmark corpus with the tiny
config's training settings, --layers blocks (default 8) and a 4M-8M parameter band (each model sized into it; the
routers and predictors add about 2%). At the tiny config's own size (d = 120) a cached step costs about 0.6 ms
per block whatever its FLOPs (TensorFlow's per-op dispatch); at d = 264 the blocks' arithmetic weighs more, as on
real hardware at real sizes. The MoD model routes causally at sampling time
through its auxiliary predictor, so the fraction it routes is measured, not assumed. Then each generates --tokens
tokens (default 256) with a cache (`primer_search.lm.sampling`, batch 1), the two models taking turns for five
rounds; the figure is the median time per generated token.

Reported: validation loss of each; the MoD model's routed fraction (validation set, and while sampling); sampling
FLOPs per token (analytic, with the measured fraction) and measured step time; their ratios, MoD over dense.
Raposo et al. (2024) report MoD models "upwards of 50% faster to step during post-training sampling".

    python bench/mod_sampling.py [--budget 120] [--layers 8] [--tokens 256] [--set section.key=value ...]

The last line printed is the headline: the sampling step-time ratio, MoD over dense.
"""

from __future__ import annotations

from macro_common import config, paired_step_seconds, parse_args, train

from primer_search.lm.mod import MixtureOfDepths
from primer_search.lm.sampling import Sampler
from primer_search.program.macro_options import MacroOptions
from primer_search.program.seeds import load_seed


def main() -> None:
    args = parse_args(__doc__, budget=120.0, tokens=256)
    cfg = config(args)
    dense_dna = load_seed("transformer")
    routed_dna = dense_dna.replace(macro_options=MacroOptions.from_dict(
        {"mixture_of_depths": {"enabled": True, "capacity": 0.125, "route_pattern": "every_other_odd"}}))
    trained = {label: train(dna, cfg, label) for label, dna in (("dense", dense_dna), ("MoD", routed_dna))}
    timed = paired_step_seconds({label: Sampler(model, max_length=args.tokens + 1)
                                 for label, (model, _, _) in trained.items()}, args.tokens)
    rows = {}
    for label, (model, arch, metrics) in trained.items():
        seconds, run = timed[label]
        routed_blocks = sum(isinstance(b, MixtureOfDepths) for b in model.blocks)
        dense_blocks = len(model.blocks) - routed_blocks
        sampled = ((run.blocks_run / run.generated - dense_blocks) / routed_blocks) if routed_blocks else None
        flops = arch.sampling_flops_per_token(metrics["unit"], metrics)
        rows[label] = (metrics, seconds, flops)
        print(f"{label}: sampling {seconds * 1000:.2f} ms/token, {flops / 1e6:.2f} MFLOPs/token"
              + (f"; routed {metrics['mod_routed_fraction']:.1%} of validation tokens per routed block, "
                 f"{sampled:.1%} while sampling" if sampled is not None else ""))
    (dense, dense_s, dense_f), (mod, mod_s, mod_f) = rows["dense"], rows["MoD"]
    print(f"validation loss: dense {dense['validation_loss']:.4f}, MoD {mod['validation_loss']:.4f} "
          f"({mod['validation_loss'] / dense['validation_loss'] - 1:+.1%})")
    print(f"sampling FLOPs per token, MoD / dense: {mod_f / dense_f:.2f}")
    print(f"MoD sampling step time: {mod_s / dense_s:.2f} of the dense model's ({dense_s / mod_s:.2f}x faster; "
          f"paper: upwards of 1.5x)")


if __name__ == "__main__":
    main()
