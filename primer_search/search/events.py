"""TensorBoard scalars of a search in RUN_DIR/tensorboard, one point per completed individual: savings, fitness,
and the individual's quality and sampling cost when measured.

Written with TensorFlow's own `tf.summary.write` and the scalars plugin's metadata, so viewing them needs
TensorBoard but writing them does not.
"""

from __future__ import annotations

import pathlib

from primer_search.search.store import RunStore


class EventLog:
    def __init__(self, store: RunStore):
        self.store = store
        self._writer = None

    def log(self, fitness: float | None, result: dict, population) -> None:
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(pathlib.Path(self.store.run_dir) / "tensorboard"))
        counts = self.store.counts()
        fitnesses = [m.fitness for m in population if m.fitness is not None]
        scalars = {"savings/cache_hits": counts["cache_hits"], "savings/hurdle_stops": counts["hurdle_stops"]}
        if fitness is not None:
            scalars["fitness/individual"] = fitness
            scalars["quality/validation_loss"] = result["validation_loss"]
            scalars["quality/bits_per_byte"] = result["bits_per_byte"]
            if result.get("sampling_flops_per_token"):
                scalars["cost/sampling_mflops_per_token"] = result["sampling_flops_per_token"] / 1e6
        if fitnesses:
            scalars["fitness/population_best"] = min(fitnesses)
            scalars["fitness/population_mean"] = sum(fitnesses) / len(fitnesses)
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        with self._writer.as_default():
            for tag, value in scalars.items():
                tf.summary.write(tag, tf.constant(float(value)), step=counts["done"], metadata=metadata)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
