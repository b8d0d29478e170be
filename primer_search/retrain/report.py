"""The retrain report: `scaling.summarize` of a retrain directory's results, written as report.json, report.csv,
a printed table and PNG plots (validation curves against training FLOPs per size, quality against compute with
the power-law fits, speedup factors against size). The plots need matplotlib (the `plots` extra)."""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib
from typing import Sequence

from primer_search.retrain.scaling import Report, Run, summarize
from primer_search.search.reports import plus_minus, ratio_text


def runs_of(jobs_and_results: Sequence[tuple]) -> list[Run]:
    """`scaling.Run`s from `retrain.retrain`'s (job, result) pairs."""
    return [Run(job.program.label, job.program.baseline, job.size, job.seed, job.parameter_count, result)
            for job, result in jobs_and_results]


def table(report: Report) -> str:
    """One row per program and size: parameters, seeds, compute, final quality (mean ± 95% CI) and speedups
    (geometric mean [95% CI])."""
    head = f"{'program':<28} {'size':>4} {'params':>11} {'seeds':>5} {'FLOPs':>9} {report.metric:>16}  speedup"
    lines = [head, "-" * len(head)]
    for r in report.sizes:
        final = "failed" if r.final_mean is None else plus_minus(r.final_mean, r.final_ci, ".4f")
        speedups = "  ".join(f"{ratio_text(s.mean, s.interval)}x vs {s.baseline}" + _bounds(s) for s in r.speedups
                             if s.mean is not None)
        compute = f"{r.compute:.2e}" if r.compute else "-"
        lines.append(f"{r.program[-28:]:<28} {r.size:>4} {r.parameter_count:>11,} {r.seeds:>5} {compute:>9} "
                     f"{final:>16}  {speedups}")
    for law in report.power_laws:
        fit = f", R^2 {law.r_squared:.3f}" if law.r_squared is not None else ""
        lines.append(f"power law {law.program}: {report.metric} = {law.coefficient:.3g} x FLOPs^{law.exponent:.4f}"
                     f" over {law.sizes} sizes{fit}")
    return "\n".join(lines)


def _bounds(speedup) -> str:
    """How many of the paired factors are bounds: '>=' where the program was better from its first point, '<='
    where the baseline was better than the program's final quality from its first point."""
    marks = [f"{mark} in {n}" for mark, n in ((">=", speedup.lower_bounds), ("<=", speedup.upper_bounds)) if n]
    return f" ({', '.join(marks)})" if marks else ""


def write(out_dir, runs: Sequence[Run], metric: str = "validation_loss") -> Report:
    """Write report.json, report.csv and the plots into `out_dir`; returns the report."""
    out = pathlib.Path(out_dir)
    report = summarize(runs, metric)
    (out / "report.json").write_text(json.dumps(dataclasses.asdict(report), indent=1))
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["program", "size", "parameter_count", "seeds", "failed", "training_flops",
                         f"{metric}_mean", f"{metric}_ci95", "baseline", "speedup_geomean", "speedup_low95",
                         "speedup_high95", "speedup_pairs", "speedup_lower_bounds", "speedup_upper_bounds"])
        for r in report.sizes:
            common = [r.program, r.size, r.parameter_count, r.seeds, r.failed, r.compute, r.final_mean, r.final_ci]
            for s in r.speedups or (None,):
                low, high = s.interval if s and s.interval else (None, None)
                speedup = [s.baseline, s.mean, low, high, s.pairs, s.lower_bounds, s.upper_bounds] if s else [""] * 7
                writer.writerow(common + speedup)
    plot(out, runs, report)
    return report


def plot(out: pathlib.Path, runs: Sequence[Run], report: Report) -> list[pathlib.Path]:
    """curves.png, scaling.png and speedup.png (nothing without matplotlib)."""
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    metric, programs = report.metric, list(dict.fromkeys(r.program for r in report.sizes))
    colors = {p: f"C{i}" for i, p in enumerate(programs)}
    sizes = sorted({run.size for run in runs})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 3.6), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for run in (r for r in runs if r.size == size and r.ok):
            curve = run.result["curve"]
            ax.plot([p["flops"] for p in curve], [p[metric] for p in curve], color=colors[run.program], alpha=0.8,
                    label=run.program if run.seed == 0 else None)
        ax.set(title=f"size {size}", xlabel="training FLOPs", ylabel=metric, xscale="log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=7)
    paths = [_save(fig, out / "curves.png")]
    fig, ax = plt.subplots(figsize=(5, 4))
    laws = {law.program: law for law in report.power_laws}
    for program in programs:
        rows = [r for r in report.sizes if r.program == program and r.final_mean is not None]
        xs = [r.compute for r in rows]
        ax.errorbar(xs, [r.final_mean for r in rows], yerr=[r.final_ci or 0 for r in rows], fmt="o",
                    color=colors[program], label=program)
        if program in laws and xs:
            law = laws[program]
            ax.plot(xs, [law.coefficient * x ** law.exponent for x in xs], "--", color=colors[program])
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs", ylabel=f"final {metric}")
    for formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):   # losses as numbers
        formatter(matplotlib.ticker.FormatStrFormatter("%.1f"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=7)
    paths.append(_save(fig, out / "scaling.png"))
    fig, ax = plt.subplots(figsize=(5, 4))
    labelled = set()
    for r in report.sizes:
        for s in r.speedups:
            if s.mean is not None:
                label = f"{r.program} vs {s.baseline}"
                low, high = s.interval or (s.mean, s.mean)
                ax.errorbar([r.parameter_count], [s.mean], yerr=[[s.mean - low], [high - s.mean]], fmt="o",
                            color=colors[r.program], label=None if label in labelled else label)
                labelled.add(label)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set(xscale="log", xlabel="parameters", ylabel="speedup factor (geometric mean, 95% CI)")
    if labelled:
        ax.legend(fontsize=7)
    paths.append(_save(fig, out / "speedup.png"))
    return paths


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
