"""Pointwise primitives: 4 binary arithmetic ops and 15 unary ops (Primer Table 2).

None of them moves information along the sequence axis. Binary ops align their operands by one rule
(`align_binary`): a positions operand meets a features operand of width > 1 as its causal mean over keys; a
single column broadcasts; otherwise input 2 is cut or zero-padded to input 1's width, and the result has input
1's width. Shapes: features [B, m, S, W], positions [B, m, S, S].
"""

from __future__ import annotations

from primitives import axes
from primitives.lazy_tf import tf
from primitives.registry import CONST, FEATURES, IN1, IN2, POSITIONS, OpCall, OpSpec, Sig, register

BINARY_SHAPE_DOC = "in1's width (a single column broadcasts; positions stay positions)"


def binary_shape(a: Sig, b: Sig, dim=None) -> Sig:
    """Output signature of a pointwise binary op (the dimension-mismatch rule)."""
    if a.kind == POSITIONS and b.kind == POSITIONS:
        return a
    if a.kind == POSITIONS:
        return a if b.width.is_single else b
    if b.kind == POSITIONS:
        return b if a.width.is_single else a
    return b if a.width.is_single else a


def align_binary(call: OpCall) -> tuple[tf.Tensor, tf.Tensor]:
    """Operands of a pointwise binary op, ready to broadcast against each other."""
    x, y = call.x, call.y
    if call.out.kind == FEATURES:
        x, y = axes.as_features(x, call.sig_x), axes.as_features(y, call.sig_y)
        x_single = call.sig_x.kind == POSITIONS or call.sig_x.width.is_single
        y_single = call.sig_y.kind == POSITIONS or call.sig_y.width.is_single
        if not x_single and not y_single:
            y = axes.resize(y, x.shape[-1])  # [B, m, S, W1]
    return x, y


def _binary(name, tf_name, fn, doc):
    register(OpSpec(name=name, arity=2, reads=(IN1, IN2), shape=binary_shape, shape_doc=BINARY_SHAPE_DOC,
                    fn=lambda call: fn(*align_binary(call)), doc=doc, tf_name=tf_name))


_binary("ADD", "tf.math.add", lambda x, y: tf.math.add(x, y), "x + y")
_binary("DIFFERENCE", "tf.math.subtract", lambda x, y: tf.math.subtract(x, y), "x - y")
_binary("DIVIDE", "tf.math.divide", lambda x, y: tf.math.divide(x, y), "x / y")
_binary("MULTIPLY", "tf.math.multiply", lambda x, y: tf.math.multiply(x, y), "x * y")


def same_shape(a: Sig, b=None, dim=None) -> Sig:
    return a


def _unary(name, tf_name, fn, doc, uses_const=False):
    reads = (IN1, CONST) if uses_const else (IN1,)
    impl = (lambda call: fn(call.x, call.const)) if uses_const else (lambda call: fn(call.x))
    register(OpSpec(name=name, arity=1, reads=reads, shape=same_shape, shape_doc="same as in1",
                    fn=impl, doc=doc, tf_name=tf_name))


_unary("ABS_ROOT", "tf.math.sqrt(tf.abs(x))", lambda x: tf.sqrt(tf.abs(x)), "sqrt(|x|)")
_unary("SQUARE", "tf.math.square", lambda x: tf.square(x), "x^2")
_unary("EXP", "tf.exp", lambda x: tf.exp(x), "e^x")
_unary("LOG", "tf.math.log(tf.abs(x))", lambda x: tf.math.log(tf.abs(x)), "log|x|")
_unary("C_MUL", "tf.math.multiply", lambda x, c: x * tf.cast(c, x.dtype), "x * C", uses_const=True)
_unary("ABS", "tf.abs", lambda x: tf.abs(x), "|x|")
_unary("RECIP", "tf.math.reciprocal_no_nan", lambda x: tf.math.reciprocal_no_nan(x), "1 / x (0 where x = 0)")
_unary("SIGN", "tf.sign", lambda x: tf.sign(x), "sign(x)")
_unary("COS", "tf.cos", lambda x: tf.cos(x), "cos(x)")
_unary("SIN", "tf.sin", lambda x: tf.sin(x), "sin(x)")
_unary("TANH", "tf.tanh", lambda x: tf.tanh(x), "tanh(x)")
_unary("MAX", "tf.math.maximum", lambda x, c: tf.nn.relu(x) if c == 0 else tf.maximum(x, tf.cast(c, x.dtype)),
       "max(x, C); C = 0 is ReLU", uses_const=True)
_unary("MIN", "tf.math.minimum", lambda x, c: tf.minimum(x, tf.cast(c, x.dtype)), "min(x, C)",
       uses_const=True)
_unary("SIGMOID", "tf.sigmoid", lambda x: tf.sigmoid(x), "1 / (1 + e^-x)")

