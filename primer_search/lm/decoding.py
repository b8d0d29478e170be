"""Token-by-token decoding of any compiled block with a cache (key/value style), equal to the full forward pass.

How it works: `BlockDecoder`.
"""

from __future__ import annotations

import dataclasses
import functools

import tensorflow as tf

import primitives
from primitives import FEATURES, POSITIONS, OpCall, axes
from primitives.parametric import dense
from primer_search.program.compiler import CompiledBlock
from primer_search.program.decoding_rules import KEYS, MASK, ROW, RUNNING, VALUES, WINDOW, cache_nodes, conv_taps, \
    decoding_rule, fallback_reason
from primer_search.program.graph import Node

CACHED, FALLBACK = "cached", "fallback"      # BlockDecoder.mode


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One cache entry besides "length": what it holds, which node writes it and its per-row shape."""

    key: str
    kind: str           # "rows" | "square" (histories), "window", "running"
    node: int           # the source node (histories, windows: the producer of the rows) or the CUM node
    branches: int       # m (1 = shared)
    width: int          # W (rows, window, running); 0 for a square history
    taps: int = 0       # window: k - 1 rows kept
    fill: float = 0.0   # running: the identity row it starts at

    def initial(self, batch_size: int, dtype) -> tf.Tensor:
        shape = {"rows": [batch_size, self.branches, 0, self.width],
                 "square": [batch_size, self.branches, 0, 0],
                 "window": [batch_size, self.branches, self.taps, self.width],
                 "running": [batch_size, self.branches, 1, self.width]}[self.kind]
        return tf.fill(shape, tf.cast(self.fill, dtype))

    def spec(self, dtype) -> tf.TensorSpec:
        """The entry's shape for any batch size and cache length (None)."""
        shape = {"rows": [None, self.branches, None, self.width],
                 "square": [None, self.branches, None, None],
                 "window": [None, self.branches, self.taps, self.width],
                 "running": [None, self.branches, 1, self.width]}[self.kind]
        return tf.TensorSpec(shape, dtype)


def _probe_shapes(block: CompiledBlock) -> dict[int, tuple[int, int]]:
    """(branch size m, last-axis size) of every node's value, from one full pass over a single position."""
    x = tf.zeros([1, 1, block.d_model], block.compute_dtype)
    values: dict[int, tf.Tensor] = {}
    for node in block.graph.nodes:
        values[node.id] = block.run_node(node, values, x)
    return {i: (int(v.shape[1]), int(v.shape[-1])) for i, v in values.items()}


def _history_kind(node: Node) -> str:
    """How a KEYS/VALUES node's y is stored: "square" only for a T_MAT_MUL of two positions tensors."""
    both_positions = all(sig.kind == POSITIONS for sig in node.input_sigs)
    return "square" if node.op == "T_MAT_MUL" and both_positions else "rows"


def _history_row(row: tf.Tensor, sig) -> tf.Tensor:
    """The row a "rows" history stores: features as they are, positions as their causal mean [B, m, 1, 1]."""
    return axes.as_features(row, sig)


def _append_square(history: tf.Tensor, row: tf.Tensor) -> tf.Tensor:
    """[B, m, t, t] + row [B, m, 1, t+1] -> [B, m, t+1, t+1], earlier rows zero-padded to the new key."""
    padded = tf.pad(history, [[0, 0], [0, 0], [0, 0], [0, 1]])            # [B, m, t, t+1]
    return tf.concat([padded, row], axis=2)                               # [B, m, t+1, t+1]


def _conv_taps_matrix(kernel: tf.Tensor) -> tf.Tensor:
    """CONV_kX1's kernel [m, k, W, U] as one projection [m, W, k*U] (tap i in columns i*U..), as the primitive."""
    m, k, w, u = kernel.shape
    return tf.reshape(tf.transpose(kernel, [0, 2, 1, 3]), [m, w, k * u])


def _conv_row(window: tf.Tensor, k: int) -> tf.Tensor:
    """Last output row of CONV_kX1 from its last k projected rows [B, m, k, k*U] (oldest first) -> [B, m, 1, U].

    Tap i reads position t - i, i.e. slice i of the projection of window row k-1-i; summed in the primitive's
    order, so the row is the full pass's row to the last bit (up to the matmul kernel)."""
    u = window.shape[-1] // k
    return tf.add_n([window[:, :, k - 1 - i:k - i, i * u:(i + 1) * u] for i in range(k)])  # [B, m, 1, U]


def _dconv_row(window: tf.Tensor, taps: tf.Tensor) -> tf.Tensor:
    """Last output row of DCONV_kX1: window [B, m|1, k, W] (oldest first), taps [m, k, W] -> [B, m, 1, W]."""
    k = taps.shape[1]
    return tf.add_n([window[:, :, k - 1 - i:k - i] * taps[None, :, i, None, :] for i in range(k)])


def traced(fn, *signature) -> tf.types.experimental.PolymorphicFunction:
    """`fn` as a `tf.function` of this input signature, traced once. TF's retracing detector keys a function by its
    code, so the steps of several blocks (one method, one trace each) would read as retracing and log a warning;
    wrapped in a partial, each function is its own key."""
    return tf.function(functools.partial(fn), input_signature=signature, autograph=False)


class BlockDecoder:
    """Decode a `CompiledBlock` one position at a time; every step's output equals the full pass's row.

        decoder = BlockDecoder(block)
        cache = decoder.init_cache(batch_size)
        y_t, cache = decoder.step(x_t, cache)        # x_t, y_t: [B, 1, d]
        cache = decoder.extend(x_t, cache)           # write position t's keys/values etc. only (no output)

    `mode` is "cached" (per-op caches) or "fallback" (re-run the prefix; `reason` says why). The cache is a dict
    of tensors: "length" (int32 scalar, the positions it holds) and the entries listed by `cache_spec()`.
    `extend_nodes` are the graph nodes `extend` computes (the ancestors of what the cache stores).
    `traced_step` and `traced_extend` are `tf.function`s of `step` and `extend` traced once for all lengths.

    Shape glossary (as `primer_search.program.compiler`): B batch, m branch copies (1 = shared), W feature width, d
    block
    width, t the position being decoded (the cache holds positions 0..t-1). Inside the block a full-sequence tensor is
    features [B, m|1, S, W] or positions [B, m|1, S, S]; while decoding, each graph node holds only its ROW of
    position t: features [B, m|1, 1, W], positions [B, m|1, 1, t+1] (keys 0..t; the full tensor's future keys j > t
    are never computed).

    Method
    ------
    At step t every node computes its new row from its inputs' new rows with the primitive's own implementation (the
    compiler's `CompiledBlock.run_node`, so the decoder cannot drift from it): `primitives.axes` treats a positions
    tensor [..., Q, K] as the last Q queries of K positions, so causal masks and causal means are right on a [1, t+1]
    row. A few ops reach along the sequence; the decoder keeps, in the cache, exactly what they read:
        T_MAT_MUL(x, y)           the history of y, rows 0..t ("keys"): features rows [B, m, t+1, W] (a positions y
                                  that meets a features x is stored as its causal-mean rows [B, m, t+1, 1]); a
                                  positions y meeting a positions x as a square [B, m, t+1, t+1], row s zero-padded
                                  beyond key s (exact: T_MAT_MUL masks y's future keys). The op runs on (row, history).
        MAT_MUL(x positions, y)   the history of y, rows 0..t ("values"), y features; the op runs on (row, history).
        DCONV_kX1                 the last k-1 rows of the (causal-mean) input, starting as zeros, which is exactly the
                                  convolution's zero fill before position 0; the output row sums the same k products
                                  as the primitive, in its XLA form's order (O(k); the primitive on the window costs
                                  O(k^2)).
        CONV_kX1                  the same window, of the input rows already projected on all k taps [.., k*U] (the
                                  primitive's first half, once per row); the row sums the k shifted slices in order.
        CUM_SUM / CUM_PROD        (features) the previous output row, starting at the identity 0 or 1; the primitive
                                  runs on [previous, row] and its last row is kept: previous + x or previous * x.
        MASK                      band_part(x, -1, 0) keeps entry (t, j) iff j <= t; on a row that is "keep the
                                  columns j <= t" (all of a positions row; the first t+1 features of a features row,
                                  the one place where a primitive depends on the position itself).
    So a step costs O(t) for attention-like ops (O(t^2) for a T_MAT_MUL of two positions tensors, which contracts a
    whole triangle in the full pass too) and O(1) for everything else. The cache is a dict of tensors; histories grow
    along axis 2, so `traced_step` / `traced_extend` give `tf.function`s with an input signature whose lengths are
    None: one trace for every step.

    Why this is exact, and which graphs it cannot decode row by row: `primer_search.program.decoding_rules`.

    Fallback mode: the cache holds the block's input rows 0..t [B, t+1, d]; a step re-runs the block on the whole
    prefix and returns its last row (exact by causality; a token then costs a whole pass over t+1 positions).
    `BlockDecoder.mode` says which mode a decoder uses and `BlockDecoder.reason` why.

    One known difference, inherited from the full pass rather than from decoding: a full pass multiplies a masked
    (zeroed) future key by its value, so an inf/NaN value at a future position j > t can turn row t into NaN there
    (0 * inf); the decoder never sees future positions and returns the finite row.
    """

    def __init__(self, block: CompiledBlock):
        if not isinstance(block, CompiledBlock):
            raise TypeError(f"BlockDecoder: expected a CompiledBlock, received {type(block).__name__}")
        self.block = block
        self.graph = block.graph
        self.d_model = block.d_model
        self.dtype = tf.as_dtype(block.compute_dtype)
        if not block.built:
            block(tf.zeros([1, 1, self.d_model], self.dtype))            # create the weights
        self.reason = fallback_reason(self.graph)
        self.mode = CACHED if self.reason is None else FALLBACK
        self._rules = {node.id: decoding_rule(node)[0] for node in self.graph.nodes}
        self._entries: list[_Entry] = [] if self.reason else self._plan_entries(_probe_shapes(block))
        self._writes = self._entries_by_source()
        self.extend_nodes, self._window_only = self._plan_extend()   # node ids `extend` computes
        self._cache_keys = frozenset(self.cache_spec())

    # --- planning -------------------------------------------------------------------------------------------

    def _plan_entries(self, shapes: dict[int, tuple[int, int]]) -> list[_Entry]:
        entries: dict[str, _Entry] = {}
        for node in self.graph.nodes:
            rule = self._rules[node.id]
            if rule in (KEYS, VALUES):
                source, sig = node.inputs[1], node.input_sigs[1]
                kind = _history_kind(node)
                width = 0 if kind == "square" else (shapes[source][1] if sig.kind == FEATURES else 1)
                key = f"{kind}/n{source}"
                entries[key] = _Entry(key, kind, source, shapes[source][0], width)
            elif rule == WINDOW:
                entries[f"window/n{node.id}"] = self._window_entry(node, shapes)
            elif rule == RUNNING:
                key = f"running/n{node.id}"
                entries[key] = _Entry(key, "running", node.id, *shapes[node.id],
                                      fill=1.0 if node.op == "CUM_PROD" else 0.0)
        return list(entries.values())

    @staticmethod
    def _window_entry(node: Node, shapes: dict[int, tuple[int, int]]) -> _Entry:
        """A convolution's last k - 1 rows: DCONV keeps its (causal-mean) input rows [B, m|1, k-1, W], CONV the
        rows of its input projected on all k taps [B, m, k-1, k*U] (the first half of the primitive)."""
        k, source = conv_taps(node.op), node.inputs[0]
        if node.op.startswith("D"):
            width = shapes[source][1] if node.input_sigs[0].kind == FEATURES else 1
            return _Entry(f"window/n{node.id}", "window", source, shapes[source][0], width, taps=k - 1)
        branches, units = shapes[node.id]
        return _Entry(f"window/n{node.id}", "window", source, branches, k * units, taps=k - 1)

    def _entries_by_source(self) -> dict[int, list[_Entry]]:
        """The histories each node appends its row to, once the row is computed."""
        writes: dict[int, list[_Entry]] = {}
        for entry in self._entries:
            if entry.kind in ("rows", "square"):
                writes.setdefault(entry.node, []).append(entry)
        return writes

    def _plan_extend(self) -> tuple[frozenset[int], frozenset[int]]:
        """Nodes `extend` computes (the ancestors of whatever the cache stores) and the convolutions whose window
        it only shifts (their output is not needed)."""
        needed = cache_nodes(self.graph) if self.mode == CACHED else frozenset()
        window_only = {node.id for node in self.graph.nodes
                       if self._rules[node.id] == WINDOW and node.id not in needed}
        return frozenset(needed), frozenset(window_only)

    # --- the cache ------------------------------------------------------------------------------------------

    def cache_spec(self) -> dict[str, tf.TensorSpec]:
        """TensorSpecs of the cache for any batch size and length (the `tf.function` input signature)."""
        spec = {"length": tf.TensorSpec([], tf.int32)}
        if self.mode == FALLBACK:
            spec["inputs"] = tf.TensorSpec([None, None, self.d_model], self.dtype)
        for entry in self._entries:
            spec[entry.key] = entry.spec(self.dtype)
        return spec

    def init_cache(self, batch_size: int) -> dict[str, tf.Tensor]:
        """The empty cache of a batch: no position decoded yet."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BlockDecoder.init_cache: batch_size must be a positive integer, received "
                             f"{batch_size!r}")
        cache = {"length": tf.constant(0, tf.int32)}
        if self.mode == FALLBACK:
            cache["inputs"] = tf.zeros([batch_size, 0, self.d_model], self.dtype)
        for entry in self._entries:
            cache[entry.key] = entry.initial(batch_size, self.dtype)
        return cache

    @staticmethod
    def cache_length(cache: dict) -> tf.Tensor:
        """The number of positions the cache holds (the position the next step decodes)."""
        return cache["length"]

    # --- decoding -------------------------------------------------------------------------------------------

    def step(self, x_t, cache: dict) -> tuple[tf.Tensor, dict]:
        """Decode position t = cache length: x_t [B, 1, d] -> (y_t [B, 1, d], the cache holding 0..t)."""
        x_t = self._check(x_t, cache, "step")
        if self.mode == FALLBACK:
            inputs = tf.concat([cache["inputs"], x_t], axis=1)             # [B, t+1, d]
            return self.block(inputs)[:, -1:, :], {"length": cache["length"] + 1, "inputs": inputs}
        rows, new_cache = self._advance(x_t, cache, run=None, window_only=frozenset())
        return rows[self.graph.output.id], new_cache                      # [B, 1, d]

    def extend(self, x_t, cache: dict) -> dict:
        """Add position t to the cache without computing the block's output: only the nodes whose rows the cache
        stores, and their ancestors, run (CALM: an exited token still writes its keys/values in later blocks)."""
        x_t = self._check(x_t, cache, "extend")
        if self.mode == FALLBACK:
            return {"length": cache["length"] + 1, "inputs": tf.concat([cache["inputs"], x_t], axis=1)}
        return self._advance(x_t, cache, run=self.extend_nodes, window_only=self._window_only)[1]

    @functools.cached_property
    def traced_step(self):
        """`step` as a `tf.function` traced once for every batch size and cache length."""
        spec = tf.TensorSpec([None, 1, self.d_model], self.dtype)
        return traced(self.step, spec, self.cache_spec())

    @functools.cached_property
    def traced_extend(self):
        """`extend` as a `tf.function` traced once for every batch size and cache length."""
        spec = tf.TensorSpec([None, 1, self.d_model], self.dtype)
        return traced(self.extend, spec, self.cache_spec())

    def _check(self, x_t, cache: dict, method: str) -> tf.Tensor:
        x_t = tf.convert_to_tensor(x_t, self.dtype)
        if x_t.shape.rank != 3 or x_t.shape[1] not in (1, None) or x_t.shape[2] not in (self.d_model, None):
            raise ValueError(f"BlockDecoder.{method}: expected one position x_t of shape [B, 1, {self.d_model}], "
                             f"received shape {x_t.shape}")
        if not isinstance(cache, dict) or set(cache) != self._cache_keys:
            have = sorted(cache) if isinstance(cache, dict) else type(cache).__name__
            raise ValueError(f"BlockDecoder.{method}: the cache does not belong to this decoder: expected the keys "
                             f"{sorted(self._cache_keys)} (from init_cache), received {have}")
        return x_t

    def _advance(self, x_t: tf.Tensor, cache: dict, run, window_only) -> tuple[dict, dict]:
        """Compute the rows of position t of the nodes in `run` (None: all), update the cache.

        Returns (rows by node id, the new cache). A history gets its new row as soon as its source's row exists,
        so the consumer (later in topological order) reads rows 0..t."""
        t = cache["length"]
        rows: dict[int, tf.Tensor] = {}
        new_cache = {"length": t + 1}
        for node in self.graph.nodes:
            if run is None or node.id in run:
                rows[node.id] = self._row(node, rows, x_t, t, cache, new_cache)
                for entry in self._writes.get(node.id, ()):
                    new_cache[entry.key] = self._append(entry, cache[entry.key], rows[node.id])
            elif node.id in window_only:
                self._shift_window(node, rows, cache, new_cache)
        return rows, new_cache

    def _append(self, entry: _Entry, history: tf.Tensor, row: tf.Tensor) -> tf.Tensor:
        if entry.kind == "square":
            return _append_square(history, row)                           # [B, m, t+1, t+1]
        sig = self.graph.nodes[entry.node].sig
        return tf.concat([history, _history_row(row, sig)], axis=2)       # [B, m, t+1, W]

    def _row(self, node: Node, rows: dict, x_t, t, cache: dict, new_cache: dict) -> tf.Tensor:
        rule = self._rules[node.id]
        if rule == ROW:
            return self.block.run_node(node, rows, x_t)                       # the compiler's own op, on rows
        if rule == MASK:
            x = rows[node.inputs[0]]                                      # [B, m, 1, K]
            keep = tf.range(tf.shape(x)[-1]) <= t                         # [K]: columns j <= t
            return tf.where(keep, x, tf.zeros_like(x))
        if rule in (KEYS, VALUES):
            return self._history_op(node, rows, new_cache)
        if rule == WINDOW:
            window = self._shift_window(node, rows, cache, new_cache)     # [B, m, k, W] or [B, m, k, k*U]
            if node.op.startswith("D"):
                return _dconv_row(window, self.block.node_weights(node.id)["taps"])  # [B, m, 1, W]
            return _conv_row(window, conv_taps(node.op))                 # [B, m, 1, U]
        if rule == RUNNING:
            return self._running(node, rows, cache, new_cache)
        raise AssertionError(f"n{node.id} = {node.op}: no decoding rule {rule!r}")

    def _history_op(self, node: Node, rows: dict, new_cache: dict) -> tf.Tensor:
        """T_MAT_MUL / MAT_MUL on (x's row, y's history): [B, m, 1, t+1] resp. [B, m, 1, W]."""
        kind = _history_kind(node)
        source, sig_y = node.inputs[1], node.input_sigs[1]
        if kind == "rows" and sig_y.kind == POSITIONS:
            sig_y = primitives.features(primitives.SINGLE)               # stored as its causal mean
        call = OpCall(x=rows[node.inputs[0]], sig_x=node.input_sigs[0], y=new_cache[f"{kind}/n{source}"],
                      sig_y=sig_y, out=node.sig)
        return primitives.get(node.op).fn(call)

    def _shift_window(self, node: Node, rows: dict, cache: dict, new_cache: dict) -> tf.Tensor:
        """Append the input's row (DCONV) or its projection on the k taps (CONV) to the convolution's window; keep
        its last k - 1 rows. Returns the k rows [B, m, k, W] resp. [B, m, k, k*U]."""
        key = f"window/n{node.id}"
        row = axes.as_features(rows[node.inputs[0]], node.input_sigs[0])  # [B, m|1, 1, W]
        if not node.op.startswith("D"):
            kernel = self.block.node_weights(node.id)["kernel"]
            row = dense(row, _conv_taps_matrix(kernel))                   # [B, m, 1, k*U]
        window = tf.concat([cache[key], row], axis=2)                     # [B, m, k, .]
        new_cache[key] = window[:, :, 1:]                                 # [B, m, k-1, .]
        return window

    def _running(self, node: Node, rows: dict, cache: dict, new_cache: dict) -> tf.Tensor:
        """CUM_SUM / CUM_PROD on features: the primitive on [previous output, row], last row."""
        key = f"running/n{node.id}"
        pair = tf.concat([cache[key], rows[node.inputs[0]]], axis=2)      # [B, m, 2, W]
        out = primitives.get(node.op).fn(OpCall(x=pair, sig_x=node.input_sigs[0], out=node.sig))[:, :, -1:]
        new_cache[key] = out                                              # [B, m, 1, W]
        return out


def decode_sequence(decoder: BlockDecoder, x, traced: bool = False) -> tf.Tensor:
    """Run a whole sequence x [B, S, d] through the decoder one position at a time; returns [B, S, d]."""
    x = tf.convert_to_tensor(x, decoder.dtype)
    step = decoder.traced_step if traced else decoder.step
    cache = decoder.init_cache(int(x.shape[0]))
    outputs = []
    for t in range(x.shape[1]):
        y_t, cache = step(x[:, t:t + 1], cache)
        outputs.append(y_t)
    return tf.concat(outputs, axis=1)
