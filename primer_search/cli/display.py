"""Human-readable display of a fitness evaluation: a live progress line while it trains, and the result table."""

from __future__ import annotations

import time

from primer_search.config import TrainingConfig

UNITS = {"seconds": "s", "steps": " steps", "flops": " FLOPs"}


class ProgressLine:
    """One status line, redrawn in place on a terminal (a line per tenth of the budget otherwise)."""

    def __init__(self, stream, config: TrainingConfig, min_interval: float = 0.2):
        self.stream, self.config, self.min_interval = stream, config, min_interval
        self.interactive = stream.isatty()
        self._last_draw, self._last_tenth = 0.0, -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.interactive and self._last_draw:
            self.stream.write("\n")
        self.stream.flush()

    def update(self, progress, fraction: float) -> None:
        now = time.monotonic()
        tenth = int(min(fraction, 1.0) * 10)
        if self.interactive and now - self._last_draw < self.min_interval and fraction < 1.0:
            return
        if not self.interactive and tenth == self._last_tenth:
            return
        self._last_draw, self._last_tenth = now, tenth
        line = f"train {min(fraction, 1.0):6.1%} of {self.config.budget:g}{UNITS[self.config.budget_kind]}  " + (
            f"first step (tracing and compiling) took {progress.compile_seconds:.1f} s" if progress.steps == 1 else
            f"step {progress.steps}  loss {progress.last_loss:.3f}  {progress.mean_step_seconds * 1000:.0f} ms/step")
        self.stream.write(f"\r{line}\033[K" if self.interactive else line + "\n")
        self.stream.flush()

    def checkpoint(self, checkpoint) -> bool:
        text = (f"checkpoint {checkpoint.fraction:.0%}: step {checkpoint.step}, "
                f"validation loss {checkpoint.validation_loss:.4f}")
        self.stream.write(f"\r{text}\033[K\n" if self.interactive else text + "\n")
        return True


def format_result(result) -> str:
    """The result as aligned `name  value` lines (None values omitted)."""
    rows = []
    for name, value in result.to_dict().items():
        if value is None or name == "checkpoints":
            continue
        if isinstance(value, float):
            value = f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        rows.append((name, value))
    rows += [(f"checkpoint {c['fraction']:.0%}", f"step {c['step']:,}, validation loss {c['validation_loss']:.4f}")
             for c in result.checkpoints]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
