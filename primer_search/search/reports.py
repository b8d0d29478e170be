"""Reading a run: the status summary, the table of the best programs, one program, how it changed and how the
search reached it."""

from __future__ import annotations

import difflib

from primer_search.program.dna import DNA
from primer_search.program.listing import to_listing
from primer_search.search.confirmation import stored_confirmation
from primer_search.search.store import Individual, RunStore


def status_text(status) -> str:
    by_status = ", ".join(f"{name} {count}" for name, count in sorted(status.by_status.items())) or "none yet"
    best = f"{status.best[1]:.4f} (individual {status.best[0]})" if status.best else "none yet"
    lines = [
        f"individuals done    {status.done} of {status.target} ({status.in_flight} in flight)",
        f"results by status   {by_status}",
        f"best fitness        {best}",
        f"evaluations/hour    {status.evaluations_per_hour:.1f}",
        f"cache hits          {status.cache_hits} ({status.cache_hit_rate:.1%} of the individuals reused a result "
        f"without training)",
        f"hurdle stops        {status.hurdle_stops} (training compute saved: {status.hurdle_compute_saved:.1%})",
    ]
    if status.hurdle_passes:
        passes = ", ".join(f"{passed / reached:.0%} of {reached}" for reached, passed in status.hurdle_passes)
        lines.append(f"hurdle passes       {passes} (the children reaching each hurdle that passed it; halving "
                     f"hurdles aim at 50%)")
    lines.append(f"compute saved       {status.compute_factor:.2f}x (individuals per full training budget spent: "
                 f"hurdles and cache together)")
    if status.children_factor:
        factor, children, seeds = status.children_factor
        lines.append(f"                    {factor:.2f}x over the {children} children, the seed's {seeds} "
                     f"evaluation{'s' * (seeds != 1)} aside")
    if status.copied:
        lines.append(f"                    ({status.copied} of the seed's evaluations copied from other runs of the "
                     f"same setup: done, not spent here)")
    if status.trained_factor:
        factor, trained = status.trained_factor
        lines.append(f"                    {factor:.2f}x over the {trained} children that trained (ok or stopped; "
                     f"failed children's compute counted as spent)")
    if status.noise:
        lines += [f"noise               {status.noise[0]:.4f} (standard deviation of the seed's final metric over "
                  f"{status.noise[1]} training seeds)",
                  f"better than seed    {status.improvements} of {status.compared} programs (beyond the promotion "
                  f"margin: one-sided t, 0.001 per program)"]
    return "\n".join(lines)


def _hurdle_reached(individual: Individual) -> str:
    if not individual.hurdles:
        return "-"
    passed = sum(h.passed for h in individual.hurdles)
    return f"{passed}/{len(individual.hurdles)}" + ("" if passed == len(individual.hurdles) else " stop")


def model_summary(metrics: dict, dna: dict) -> str:
    """The model kind and what its macro-options measured, e.g. "token mod 12%", "calm 2.4 layers", "megabyte P8"."""
    parts = [metrics.get("architecture") or "token"]
    if metrics.get("mod_routed_fraction") is not None:
        parts.append(f"mod {metrics['mod_routed_fraction']:.0%}")
    if metrics.get("calm_average_layers") is not None:
        parts.append(f"{metrics['calm_average_layers']:.1f} layers")
    if parts[0] == "megabyte":
        parts.append(f"P{dna['macro_options']['megabyte']['patch_size']}")
    return " ".join(parts)


def _number(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def top_table(store: RunStore, n: int = 10, statuses=("ok",)) -> str:
    """The best `n` completed programs as an aligned table: fitness, quality, size, model, sampling cost."""
    rows = [("id", "fitness", "loss", "bits/byte", "params", "model", "sample MFLOP/tok", "tok/s", "step ms",
             "hurdles", "mutation", "parent")]
    individuals = store.top(n, statuses=statuses)
    for ind in individuals:
        m = ind.metrics or {}
        step = m.get("mean_step_seconds")
        sampling = m.get("sampling_flops_per_token")
        rows.append((str(ind.id), f"{ind.fitness:.4f}", _number(m.get("validation_loss"), ".4f"),
                     _number(m.get("bits_per_byte"), ".4f"), f"{m.get('parameter_count') or 0:,}",
                     model_summary(m, ind.dna), _number(sampling and sampling / 1e6, ".2f"),
                     _number(m.get("sampling_tokens_per_second"), ".0f"),
                     f"{step * 1000:.0f}" if step else "-", _hurdle_reached(ind),
                     ind.mutation or "seed", str(ind.parent_id) if ind.parent_id is not None else "-"))
    confirmation = stored_confirmation(store)
    if confirmation is not None:                 # confirmed figures beside the search's
        seed = next((p.individual_id for p in confirmation.programs if p.role == "seed"), "-")
        rows[0] += ("confirmed", f"speedup vs #{seed}", "p")
        rows[1:] = [row + _confirmed_cells(confirmation, ind.id) for row, ind in zip(rows[1:], individuals)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _diff(before: str, after: str, names: tuple[str, str]) -> str:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), *names, lineterm="", n=1)
    return "\n".join(lines) or "(no change in the listing)"


def _line_of_descent(store: RunStore, individual: Individual) -> list[Individual]:
    """The individual's seed, each ancestor after it, and the individual."""
    line = [individual]
    while line[-1].parent_id is not None:
        line.append(store.individual(line[-1].parent_id))
    return line[::-1]


def describe_individual(store: RunStore, individual_id: int) -> str:
    """An individual's result, its listing, and its diff against its parent and against its seed."""
    ind = store.individual(individual_id)
    listing = to_listing(DNA.from_dict(ind.dna))
    result = (f"status {ind.status}, fitness {ind.fitness if ind.fitness is not None else '-'}"
              + (f", reused from individual {ind.cached_from}" if ind.cached_from else "")
              + (f", {ind.worker}" if ind.attempts == 0 else "")          # copied from another run
              if ind.done else "in flight")
    metrics = ind.metrics or {}
    error = metrics.get("error")
    parts = [f"individual {ind.id}: {result}" + (f"\nerror: {error}" if error else ""),
             f"mutation: {ind.mutation or 'seed'}" + (f" ({ind.mutation_detail})" if ind.mutation_detail else "")
             + (f", parent {ind.parent_id}" if ind.parent_id is not None else ""),
             f"hash {ind.canonical_hash}, hurdles {_hurdle_reached(ind)}"]
    if metrics.get("validation_loss") is not None:
        sampling = metrics.get("sampling_flops_per_token")
        speed = metrics.get("sampling_tokens_per_second")
        parts.append(f"model {model_summary(metrics, ind.dna)}, {metrics.get('parameter_count') or 0:,} parameters; "
                     f"validation loss {metrics['validation_loss']:.4f}, {metrics['bits_per_byte']:.4f} bits/byte"
                     + (f"; sampling {sampling / 1e6:.2f} MFLOPs/token" if sampling else "")
                     + (f", {speed:.0f} tokens/s" if speed else ""))
    confirmed = confirmed_line(stored_confirmation(store), ind.id)
    if confirmed:
        parts.append(confirmed)
    parts += ["", listing.rstrip()]
    if ind.parent_id is not None:
        parent = store.individual(ind.parent_id)
        parts += ["", f"versus parent {parent.id}:",
                  _diff(to_listing(DNA.from_dict(parent.dna)), listing, (f"#{parent.id}", f"#{ind.id}"))]
        seed = _line_of_descent(store, ind)[0]
        if seed.id != parent.id:
            parts += ["", f"versus seed {seed.id}:",
                      _diff(to_listing(DNA.from_dict(seed.dna)), listing, (f"#{seed.id}", f"#{ind.id}"))]
    return "\n".join(parts)


def lineage_text(store: RunStore, individual_id: int) -> str:
    """How the search reached an individual: its line of descent from the seed, one row per program with its
    status, search fitness, the change from its parent's fitness (where both trained to the end: a stopped program's
    fitness is from a hurdle, earlier in training; none for an earlier program proposed again, whose fitness is that
    program's mean), hurdles, once `confirm` ran its confirmed figures, and the mutation that made it."""
    line = _line_of_descent(store, store.individual(individual_id))
    confirmation = stored_confirmation(store)
    rows = [("id", "status", "fitness", "change", "hurdles", *(("confirmed", "speedup") if confirmation else ()),
             "mutation")]
    for parent, ind in zip([None, *line], line):
        new = parent is not None and ind.repeat_of is None and ind.status == parent.status == "ok"
        same = f" (= #{ind.repeat_of})" if ind.repeat_of is not None else ""   # an earlier program again: its mean
        cells = [str(ind.id), (ind.status or "in flight") + same, _number(ind.fitness, ".4f"),
                 f"{ind.fitness - parent.fitness:+.4f}" if new else "-", _hurdle_reached(ind)]
        if confirmation is not None:
            cells += _confirmed_cells(confirmation, ind.id)[:2]
        rows.append((*cells, str(ind.mutation_detail or ind.mutation or "seed")))
    steps = len(line) - 1
    return (f"individual {individual_id}: {steps} mutation{'s' * (steps != 1)} from seed {line[0].id} (change: "
            f"fitness minus the parent's, both trained to the end; = #N: program N again, fitness its mean)\n"
            + _align(rows, "  "))


# -- calibration and confirmation (search.calibration, search.confirmation) ----------------------------------------

def _align(rows: list[tuple[str, ...]], indent: str = "") -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _steps(point) -> str:
    if point.steps is None:
        return "-"
    low, high = point.steps
    return str(low) if low == high else f"{point.step:.0f} ({low}-{high})"


def calibration_text(calibration) -> str:
    """What `primer-search calibrate` prints: per seed program the metric's spread at each hurdle and at the end,
    where the hurdles fall, the smallest detectable difference, and the cost of a candidate with hurdles."""
    c = calibration
    seeds = c.training_seeds
    seed_text = f", training seeds {seeds[0]}..{seeds[-1]}" if seeds else ""
    k = max((len(p.statuses) for p in c.programs), default=0)
    lines = [f"calibration: {c.metric}, budget {c.budget:g} {c.budget_kind} (warmup {c.warmup_steps} steps), "
             f"{k} evaluations per program{seed_text}"]
    z = c.detectable(1.0)
    for program in c.programs:
        lines += ["", f"{program.program} (hash {program.canonical_hash or '-'}): {program.ok} of "
                      f"{len(program.statuses)} evaluations ok"]
        lines += [f"  failed: {error}" for error in program.errors]
        rows = [("point", "step", "train s", "mean", "std", "detectable", "rank corr. with end")]
        points = [(f"hurdle {i + 1} ({p.fraction:.1%})", p) for i, p in enumerate(program.hurdles)]
        for label, p in points + [("end", program.final)]:
            rows.append((label, _steps(p), _number(p.train_seconds, ".1f"), _number(p.mean, ".4f"),
                         _number(p.std, ".4f"), _number(c.detectable(p.std), ".4f"),
                         _number(p.rank_correlation, ".2f") if label != "end" else ""))
        lines.append(_align(rows, "  "))
        sigma = program.final.std
        if sigma is not None:
            n = program.final.runs
            lines.append(f"  smallest detectable difference at the end: {c.detectable(sigma):.4f} with one evaluation "
                         f"per program, {c.detectable(sigma, n):.4f} with {n}")
    lines += ["", f"detectable: the smallest true difference a one-sided two-sample z rule finds at level {c.alpha:g} "
                  f"with power {c.power:g}:", f"  (z_{1 - c.alpha:g} + z_{c.power:g}) x std x sqrt(2 / n) = "
                  f"{z:.2f} std with one evaluation per program (n = 1)"]
    if c.hurdle_fractions:
        h = len(c.hurdle_fractions)
        terms = " + ".join(["f1"] + [f"(f{i + 1} - f{i})/{2 ** i}" for i in range(1, h)] + [f"(1 - f{h})/{2 ** h}"])
        lines += [f"hurdles at {', '.join(f'{f:.1%}' for f in c.hurdle_fractions)} of the budget, each passing half "
                  f"the candidates: a candidate costs", f"  E = {terms} = {c.expected_cost:.3f} of a full "
                  f"evaluation: compute saved {c.compute_saved:.2f}x"]
    else:
        lines.append("no hurdles: every candidate trains for the whole budget")
    return "\n".join(lines)


def plus_minus(mean, half_width, fmt: str) -> str:
    """A mean ± the half width of its interval ("-" for none)."""
    if mean is None:
        return "-"
    return format(mean, fmt) + (f" ± {format(half_width, fmt)}" if half_width is not None else "")


def ratio_text(centre: float | None, interval: tuple[float, float] | None) -> str:
    """A ratio's geometric mean and 95% interval: "2.84 [2.55, 3.15]"."""
    if centre is None:
        return "-"
    return f"{centre:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def speedup_text(comparison) -> str:
    """The per-seed speedups' geometric mean [95% CI]; '>=' when all are lower bounds, '<=' when all are upper
    bounds; the number of pairs when a training failed."""
    if comparison.speedup_mean is None:
        return "-"
    lower, upper = comparison.bounds
    pairs, seeds = comparison.pairs, len(comparison.speedups)
    text = ratio_text(comparison.speedup_mean, comparison.speedup_interval)
    notes = [f"{lower + upper} of {pairs} bounds"] if 0 < lower + upper < pairs else []
    notes += [f"{pairs} of {seeds} pairs"] if pairs < seeds else []
    prefix = ">= " if lower == pairs else "<= " if upper == pairs else ""
    return prefix + text + (f" ({'; '.join(notes)})" if notes else "")


def p_text(value) -> str:
    """A p-value: two significant digits below 0.001, three decimals above ("-" for none)."""
    return "-" if value is None else f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def confirmation_text(confirmation) -> str:
    """What `primer-search confirm` prints: each program's final metric on the test split with its CI, and against
    each seed program its speedup factor and the paired test's p-value."""
    c = confirmation
    seeds = [p.individual_id for p in c.programs if p.role == "seed"]
    s = c.training_seeds
    lines = [f"confirmation: test {c.metric} after {c.budget_multiplier:g}x the search budget ({c.budget:g} "
             f"{c.budget_kind}), paired training seeds {s[0]}..{s[-1]}",
             f"test split: {c.test_split}",
             f"trainings: {c.trained} run now, {c.reused} reused from the run store"
             + (f" ({c.copied} copied from other runs)" if c.copied else ""), ""]
    header = ["id", "role", "search fitness", f"test {c.metric}", "runs ok"]
    for seed in seeds:
        header += [f"speedup vs #{seed}", f"p vs #{seed}"]
    rows = [tuple(header)]
    for p in c.programs:
        row = [str(p.individual_id), p.role, _number(p.search_fitness, ".4f"), plus_minus(p.mean, p.ci, ".4f"),
               f"{sum(v is not None for v in p.values)}/{len(p.values)}"]
        compared = {x.seed_id: x for x in p.comparisons}
        for seed in seeds:
            x = compared.get(seed)
            row += ["-", "-"] if x is None else [speedup_text(x), p_text(x.p_value)]
        rows.append(tuple(row))
    lines += [_align(rows), "",
              f"test {c.metric}: mean ± half width of the 95% t confidence interval over the training seeds.",
              f"speedup vs #N: the training FLOPs seed #N needs to reach a test {c.metric}, over the FLOPs the",
              "  program needs (So et al. 2021, section 4), at the value both reach (the seed's final one, or the",
              "  program's where it ends worse: below 1), per training seed, then their geometric mean [95% CI of",
              "  the log factors]; '>=': lower bounds (the program better at its first point), '<=': upper bounds",
              "  (the seed better than the program's final value at its first point).",
              f"p vs #N: two-sided paired t-test of the final test {c.metric} against seed #N's, paired by training "
              f"seed."]
    return "\n".join(lines)


def best_against_text(run_dir, reference_dir, best: int, reference: int, comparison) -> str:
    """One run's best confirmed program against another's (`confirmation.compare_best`)."""
    x = comparison
    difference = "-" if x.difference is None else f"{x.difference:+.4f}"
    return (f"best confirmed #{best} of {run_dir} against #{reference} of {reference_dir}: speedup {speedup_text(x)}, "
            f"difference {difference}, paired p {p_text(x.p_value)} ({x.pairs} training seeds)")


def _confirmed_cells(confirmation, individual_id: int) -> tuple[str, str, str]:
    """(confirmed metric, speedup against the first seed, p) of an individual, or dashes."""
    program = confirmation.program(individual_id) if confirmation else None
    if program is None:
        return "-", "-", "-"
    first = program.comparisons[0] if program.comparisons else None
    return (plus_minus(program.mean, program.ci, ".4f"), "-" if first is None else speedup_text(first),
            "-" if first is None else p_text(first.p_value))


def confirmed_line(confirmation, individual_id: int) -> str | None:
    """`show`'s line of confirmed figures, or None when the individual was not confirmed."""
    program = confirmation.program(individual_id) if confirmation else None
    if program is None:
        return None
    c = confirmation
    parts = [f"test {c.metric} {plus_minus(program.mean, program.ci, '.4f')}"]
    parts += [f"speedup vs seed {x.seed_id} {speedup_text(x)} (p {p_text(x.p_value)})" for x in program.comparisons]
    return (f"confirmed ({c.budget_multiplier:g}x budget, {len(program.values)} training seeds, test split "
            f"{c.test_split}):\n  " + "; ".join(parts))
