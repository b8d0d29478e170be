"""A DNA as a standalone Python module: a Keras 3 layer for its block and the language model around it.

The written module imports only keras (its tensor code is `keras.ops`) and the standard library, so a program found
here runs, trains and loads weights in any Keras 3 project. It is generated from the lowered graph, one line per
node, with the same weight names, shapes, order and initial values (`compiler.weight_seed`) as `CompiledBlock`:
`Block(seed=s)` starts equal to `CompiledBlock(dna, unit, seed=s)`, and `set_weights` moves trained weights across.
A program with macro-options gets its block only (the routing, early exit and patching layers stay in this project).
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re

import numpy as np

from primitives import FEATURES, POSITIONS, Sig, Width
from primer_search.config import ModelConfig
from primer_search.lm.keras_templates import BLOCK, HEADER, HELPERS, MODEL
from primer_search.program.compiler import _instruction_names, node_identity
from primer_search.program.dna import DNA
from primer_search.program.graph import Node, canonical_hash, lower
from primer_search.program.listing import to_listing


_UNARY = {"ABS_ROOT": "ops.sqrt(ops.abs({x}))", "SQUARE": "ops.square({x})", "EXP": "ops.exp({x})",
          "LOG": "ops.log(ops.abs({x}))", "C_MUL": "{x} * {c}", "ABS": "ops.abs({x})",
          "RECIP": "reciprocal_no_nan({x})", "SIGN": "ops.sign({x})", "COS": "ops.cos({x})", "SIN": "ops.sin({x})",
          "TANH": "ops.tanh({x})", "MIN": "ops.minimum({x}, {c})", "SIGMOID": "ops.sigmoid({x})",
          "MASK": "lower_triangle({x})", "CUM_SUM": "ops.cumsum({x}, axis=-2)",
          "CUM_PROD": "ops.cumprod({x}, axis=-2)", "SCALE": "{x} * self.{w}_vector[None, :, None, :]",
          "SHIFT": "{x} + self.{w}_vector[None, :, None, :]"}
_BINARY = {"ADD": "+", "DIFFERENCE": "-", "DIVIDE": "/", "MULTIPLY": "*", "MAT_MUL": "*"}
_REDUCTIONS = {"RED_MEAN": ("mean", "0.0"), "RED_SUM": ("sum", "0.0"), "RED_MIN": ("min", "math.inf"),
               "RED_MAX": ("max", "-math.inf"), "RED_PROD": ("prod", "1.0")}


def width_code(width: Width) -> str:
    """A symbolic width as Python over the unit `u`: Width(2, 1) -> "2 * u + 1"."""
    units = {0: "", 1: "u"}.get(width.units, f"{width.units} * u")
    ones = str(width.ones) if width.ones or not units else ""
    return " + ".join(part for part in (units, ones) if part)


def _shape_comment(sig: Sig, mult: int) -> str:
    last = "S" if sig.kind == POSITIONS else width_code(sig.width)
    return f"[B, {mult}, S, {last}]"


def _single(sig: Sig) -> bool:
    return sig.kind == POSITIONS or sig.width.is_single


def _features(name: str, sig: Sig) -> str:
    return f"causal_mean({name})" if sig.kind == POSITIONS else name


def _binary(node: Node, x: str, y: str, operator: str) -> str:
    """The pointwise binary rule (`primitives.elementwise.align_binary`) written out for this node's signatures."""
    sx, sy = node.input_sigs
    if node.sig.kind == FEATURES:
        x, y = _features(x, sx), _features(y, sy)
        if not _single(sx) and not _single(sy) and sx.width != sy.width:
            y = f"resize({y}, {width_code(sx.width)})"
    return f"{x} {operator} {y}"


def _t_mat_mul(node: Node, x: str, y: str) -> str:
    sx, sy = node.input_sigs
    if sx.kind == POSITIONS and sy.kind == POSITIONS:
        return f"ops.matmul(mask_future({x}), ops.swapaxes(mask_future({y}), -1, -2))"
    x, y = _features(x, sx), _features(y, sy)
    if _single(sx) and not _single(sy):
        width = width_code(sy.width)
        x = f"ops.repeat({x}, {width}, axis=-1)"
    else:
        width = "1" if _single(sx) else width_code(sx.width)
        if _single(sy):
            y = y if width == "1" else f"ops.repeat({y}, {width}, axis=-1)"
        elif _single(sx) or sy.width != sx.width:
            y = f"resize({y}, {width})"
    return f"ops.matmul(scale_by_width({x}, {width}), ops.swapaxes({y}, -1, -2))"


def _expression(node: Node, width_units: int, d: str = "d") -> str:
    """The Python expression of one graph node; its inputs are h{id} and its weights self.w{id}_{name}."""
    args = [f"h{i}" for i in node.inputs]
    x, w, op = (args[0] if args else "x"), f"w{node.id}", node.op
    c = repr(float(node.const)) if node.const is not None else "0.0"
    sig_x = node.input_sigs[0] if node.input_sigs else None
    if op == "INPUT":
        return "x[:, None]"
    if op == "SPLIT":
        return f"split({x}, {node.k})"
    if op == "MERGE":
        return f"merge({_features(x, sig_x)}, {node.mult}, {node.k})"
    if op == "SOFTMAX":
        return f"masked_softmax({x})"
    if op == "OUTPUT":
        out = _features(f"{x}[:, 0]", sig_x)
        if _single(sig_x):
            return f"ops.repeat({out}, {d}, axis=-1)"
        return out if sig_x.width == Width(width_units) else f"resize({out}, {d})"
    if op == "MAX":
        return f"ops.relu({x})" if float(node.const) == 0 else f"ops.maximum({x}, {c})"
    if op in _UNARY:
        return _UNARY[op].format(x=x, c=c, w=w)
    if op == "MAT_MUL" and sig_x.kind == POSITIONS:
        return f"causal_product({x}, {args[1]})"
    if op in _BINARY:
        return _binary(node, x, args[1], _BINARY[op])
    if op == "T_MAT_MUL":
        return _t_mat_mul(node, x, args[1])
    if op in _REDUCTIONS:
        name, identity = _REDUCTIONS[op]
        if sig_x.kind == POSITIONS:
            if op == "RED_MEAN":
                return f"causal_mean({x})"
            return f"ops.{name}(mask_future({x}, {identity}), axis=-1, keepdims=True)"
        return f"ops.{name}({x}, axis=-1, keepdims=True)"
    if op == "CONV_1X1":
        return f"dense({_features(x, sig_x)}, self.{w}_kernel)"
    if re.fullmatch(r"CONV_\d+X1", op):
        return f"causal_conv({_features(x, sig_x)}, self.{w}_kernel)"
    if re.fullmatch(r"DCONV_\d+X1", op):
        return f"causal_depthwise({_features(x, sig_x)}, self.{w}_taps)"
    raise ValueError(f"keras export: no rule for op {op!r}")  # a new primitive needs one here


def _quote(text: str) -> str:
    return json.dumps(text)


def _initializer_code(init: str, shape: str, seed: str) -> str:
    return {"ones": '"ones"', "zeros": '"zeros"', "primer_dconv": f"primer_dconv({shape})",
            "glorot": f"glorot({shape}, {seed})"}[init]


def _block_code(dna: DNA, width_units: int) -> tuple[str, str]:
    """The Block class's build() and call() bodies."""
    graph, names = lower(dna, width_units), _instruction_names(dna)
    build, call = [], []
    for node in graph.nodes:
        for name, spec in node.weight_specs().items():
            dims = [width_code(s) if isinstance(s, Width) else str(s) for s in spec.shape]
            shape = f"({', '.join([str(node.mult), *dims])})"
            seed = f"weight_seed(self.seed, {_quote(node_identity(dna, node.path, names))}, {_quote(name)}, shape)"
            build += [f"        shape = {shape}",
                      f"        init = {_initializer_code(spec.init, 'shape', seed)}",
                      f"        self.w{node.id}_{name} = self.add_weight(name={_quote(node.path + '.' + name)}, "
                      "shape=shape, initializer=init)"]
        shape = _shape_comment(node.sig, node.mult) if node.op != "OUTPUT" else "[B, S, d]"
        comment = f"# {node.op}" + (f" {node.path}" if node.path else "") + f"  {shape}"
        line = f"        h{node.id} = {_expression(node, width_units)}"
        call += [line.ljust(72) + "  " + comment] if len(line) <= 72 else [f"        {comment}", line]
    call.append(f"        return h{graph.output.id}")
    return "\n".join(build) or "        pass", "\n".join(call)


def _used_helpers(code: str) -> list[str]:
    used, todo = set(), [n for n in HELPERS if re.search(rf"\b{n}\(", code)]
    while todo:
        name = todo.pop()
        if name not in used:
            used.add(name)
            todo.extend(HELPERS[name][1])
    return [n for n in HELPERS if n in used]


def module_source(dna: DNA, unit: int, model: ModelConfig = ModelConfig()) -> str:
    """The text of the standalone module for `dna` at `unit` (the default of its classes' `unit` argument)."""
    build, call = _block_code(dna, model.width_units)
    plain = not dna.macro_options.any_enabled
    classes = BLOCK.format(build=build, call=call) + (MODEL if plain else "")
    helpers = "".join(HELPERS[name][0] for name in _used_helpers(classes))
    listing = "\n".join(f"    {line}" if line else "" for line in to_listing(dna).splitlines())
    extra = ("" if plain else f"\nThe DNA's macro-options ({dna.macro_options.describe()}) are not part of this module:"
             " it holds the block only.\n")
    usage = ("    model = LanguageModel()                   # tokens [B, S] -> next-token logits [B, S, vocab]\n"
             if plain else "")
    header = HEADER.format(name=dna.name or "program", hash=canonical_hash(dna), unit=unit, usage=usage,
                            extra=extra, listing=listing, width_units=model.width_units,
                            vocab=model.vocab_size, layers=model.num_layers, tie=model.tie_embeddings)
    return header + helpers + classes


def write_module(dna: DNA, path, unit: int, model: ModelConfig = ModelConfig()) -> None:
    """Write `module_source` to a .py file."""
    path = pathlib.Path(path)
    if path.suffix != ".py":
        raise ValueError(f"keras export: {str(path)!r} should be a .py file")
    path.write_text(module_source(dna, unit, model))


def write_trained(model, path) -> pathlib.Path:
    """Write a trained `LanguageModel`'s module to `path` (.py) and its weights beside it (.weights.h5, for
    `LanguageModel().load_weights`); returns the weights' path. Plain programs only: the module's model class is
    the token model."""
    dna = model.dna
    if dna.macro_options.any_enabled:
        raise ValueError(f"keras export: the model uses macro-options ({dna.macro_options.describe()}); the Keras "
                         "module holds their block only, so export the DNA (a .py path) instead of the trained model")
    config = ModelConfig(vocab_size=model.vocab_size, num_layers=model.num_layers, width_units=model.width_units,
                         tie_embeddings=model.tie_embeddings)
    write_module(dna, path, model.unit, config)
    spec = importlib.util.spec_from_file_location(f"exported_{canonical_hash(dna)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    exported = module.LanguageModel()
    exported(np.zeros((1, 1), np.int32))
    exported.set_weights(model.get_weights())
    weights = pathlib.Path(path).with_suffix(".weights.h5")
    exported.save_weights(weights)
    return weights
