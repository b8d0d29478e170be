import pathlib

import numpy as np
import pytest
import tensorflow as tf

import primitives
from primitives import FEATURES, POSITIONS, SINGLE, OpCall, Width, features

UNIT = 3
README = pathlib.Path(primitives.__file__).parent / "README.md"
PAPER_TABLE_2 = {
    "ADD", "DIFFERENCE", "DIVIDE", "MULTIPLY", "ABS_ROOT", "SQUARE", "EXP", "LOG", "C_MUL", "ABS", "RECIP", "SIGN",
    "COS", "SIN", "TANH", "MAX", "MIN", "SCALE", "SHIFT", "SIGMOID", "MASK", "CUM_PROD", "CUM_SUM", "RED_MEAN",
    "RED_SUM", "RED_MIN", "RED_MAX", "RED_PROD", "MAT_MUL", "T_MAT_MUL", "CONV_1X1", "CONV_3X1", "CONV_7X1",
    "CONV_15X1", "CONV_31X1", "DCONV_3X1", "DCONV_7X1", "DCONV_15X1", "DCONV_31X1"}


def test_registry_is_exactly_the_paper_vocabulary():
    assert set(primitives.names()) == PAPER_TABLE_2 and len(primitives.names()) == 39


def test_catalogue_in_readme_matches_registry():
    text = README.read_text()
    start, end = text.index("<!-- catalogue:start -->"), text.index("<!-- catalogue:end -->")
    in_readme = text[start + len("<!-- catalogue:start -->"):end].strip()
    assert in_readme == primitives.catalogue_markdown(), (
        "primitives/README.md is out of date; regenerate the table with primitives.catalogue_markdown()")


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown primitive 'DCONV_3x1'; did you mean DCONV_3X1"):
        primitives.get("DCONV_3x1")
    with pytest.raises(ValueError, match=r"unknown primitive 'QUUX' \(expected one of the 39 names"):
        primitives.get("QUUX")


def test_registering_a_duplicate_is_refused():
    spec = primitives.get("ADD")
    with pytest.raises(ValueError, match="registered twice"):
        primitives.registry.register(spec)


def _tensor(sig, branches, rng):
    last = 6 if sig.kind == POSITIONS else sig.width.absolute(UNIT)
    return tf.constant(rng.normal(size=(2, branches, 6, last)).astype(np.float32) + 0.1)


def _weights(spec, sig, dim, mult, rng):
    return {name: tf.constant(rng.normal(size=(mult,) + w.absolute_shape(UNIT)).astype(np.float32))
            for name, w in spec.weight_specs(sig, dim).items()}


SIGS = [features(Width(2)), features(Width(3)), features(SINGLE), primitives.POSITIONS_SIG]


@pytest.mark.parametrize("name", primitives.names())
@pytest.mark.parametrize("branches", [1, 4])
def test_every_primitive_runs_and_obeys_its_shape_rule(name, branches, np_rng):
    spec = primitives.get(name)
    dim = Width(4) if primitives.DIM in spec.reads else None
    pairs = [(a, b) for a in SIGS for b in SIGS] if spec.arity == 2 else [(a, None) for a in SIGS]
    for sig_x, sig_y in pairs:
        out = spec.shape(sig_x, sig_y, dim=dim) if spec.arity == 2 else spec.shape(sig_x, dim=dim)
        call = OpCall(x=_tensor(sig_x, branches, np_rng), sig_x=sig_x,
                      y=_tensor(sig_y, 1, np_rng) if sig_y else None, sig_y=sig_y, out=out, const=0.5,
                      weights=_weights(spec, sig_x, dim, branches, np_rng), unit=UNIT)
        result = spec.fn(call)
        last = 6 if out.kind == POSITIONS else out.width.absolute(UNIT)
        assert tuple(result.shape) == (2, branches, 6, last), (name, sig_x, sig_y, out)


def test_mismatched_widths_cut_or_pad_input_2():
    add = primitives.get("ADD")
    x = tf.ones([1, 1, 2, 6])
    y = tf.constant(np.arange(9, dtype=np.float32).reshape(1, 1, 1, 9) * np.ones([1, 1, 2, 1], np.float32))
    w6, w9 = features(Width(2)), features(Width(3))
    cut = add.fn(OpCall(x=x, sig_x=w6, y=y, sig_y=w9, out=add.shape(w6, w9)))
    np.testing.assert_array_equal(cut.numpy()[0, 0, 0], 1 + np.arange(6))
    padded = add.fn(OpCall(x=y, sig_x=w9, y=x, sig_y=w6, out=add.shape(w9, w6)))
    np.testing.assert_array_equal(padded.numpy()[0, 0, 0], np.arange(9) + np.array([1] * 6 + [0] * 3))


def test_reductions_on_positions_only_see_keys_up_to_t():
    scores = tf.constant(np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3))  # row t: 3t, 3t+1, 3t+2
    p = primitives.POSITIONS_SIG
    expected = {"RED_SUM": [0, 3 + 4, 6 + 7 + 8], "RED_MAX": [0, 4, 8], "RED_MIN": [0, 3, 6],
                "RED_MEAN": [0, 3.5, 7], "RED_PROD": [0, 12, 336]}
    for name, values in expected.items():
        got = primitives.get(name).fn(OpCall(x=scores, sig_x=p)).numpy()[0, 0, :, 0]
        np.testing.assert_allclose(got, values, err_msg=name)


def test_t_mat_mul_is_the_scaled_dot_product_on_features(np_rng):
    t_mat_mul = primitives.get("T_MAT_MUL")

    def run(x, sig_x, y, sig_y):
        return t_mat_mul.fn(OpCall(x=tf.constant(x), sig_x=sig_x, y=tf.constant(y), sig_y=sig_y,
                                   out=primitives.POSITIONS_SIG)).numpy()

    x, y = (np_rng.normal(size=(1, 1, 5, 6)).astype(np.float32) for _ in range(2))          # [B, m, S, 2u]
    wide = features(Width(2))
    expected = x[0, 0] @ y[0, 0].T / np.sqrt(6)                                               # W = 6 at unit 3
    np.testing.assert_allclose(run(x, wide, y, wide)[0, 0], expected, rtol=1e-5, atol=1e-6)
    short = y[..., :4]                                                                        # y padded to x's width
    np.testing.assert_allclose(run(x, wide, short, features(Width(1, 1)))[0, 0],
                               x[0, 0, :, :4] @ short[0, 0].T / np.sqrt(6), rtol=1e-5, atol=1e-6)
    column = x[..., :1]                                                                       # broadcast to W = 6
    np.testing.assert_allclose(run(column, features(SINGLE), y, wide)[0, 0],
                               column[0, 0] * y[0, 0].sum(-1)[None, :] / np.sqrt(6), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run(column, features(SINGLE), column, features(SINGLE))[0, 0],
                               column[0, 0] @ column[0, 0].T, rtol=1e-6)                      # W = 1: unscaled
    p, q = (np.tril(np_rng.normal(size=(1, 1, 5, 5))).astype(np.float32) for _ in range(2))  # positions
    pos = primitives.POSITIONS_SIG
    np.testing.assert_allclose(run(p, pos, q, pos)[0, 0], p[0, 0] @ q[0, 0].T, rtol=1e-5, atol=1e-6)  # unscaled


def test_convolutions_are_causal_shifts():
    x = tf.constant(np.arange(1, 6, dtype=np.float32).reshape(1, 1, 5, 1))
    sig = features(SINGLE)
    taps = tf.constant([[[1.0], [10.0], [100.0]]])  # [m=1, k=3, W=1]: out[t] = x[t] + 10 x[t-1] + 100 x[t-2]
    out = primitives.get("DCONV_3X1").fn(OpCall(x=x, sig_x=sig, weights={"taps": taps})).numpy()[0, 0, :, 0]
    np.testing.assert_array_equal(out, [1, 12, 123, 234, 345])
    kernel = tf.reshape(taps, [1, 3, 1, 1])
    conv = primitives.get("CONV_3X1").fn(OpCall(x=x, sig_x=sig, weights={"kernel": kernel})).numpy()[0, 0, :, 0]
    np.testing.assert_array_equal(conv, out)


@pytest.mark.parametrize("input_branches, branches, taps, length", [
    (4, 4, 3, 9), (1, 4, 3, 9), (1, 1, 7, 9),                     # under XLA: shifted slices
    (2, 2, 15, 9), (1, 3, 31, 70), (2, 2, 31, 64), (1, 1, 15, 1)])   # under XLA: banded products
def test_depthwise_convolution_is_the_same_sum_with_and_without_xla(input_branches, branches, taps, length,
                                                                   np_rng, monkeypatch):
    from primitives import parametric
    from primitives.parametric import causal_depthwise

    forms = []                                                 # the XLA forms traced, in order
    for name in ("_sliced_depthwise", "_banded_depthwise"):
        original = getattr(parametric, name)
        monkeypatch.setattr(parametric, name, lambda *args, _f=original, _n=name: forms.append(_n) or _f(*args))

    x = tf.constant(np_rng.normal(size=(2, input_branches, length, 5)).astype(np.float32))  # [B, m|1, S, W]
    kernel = np_rng.normal(size=(branches, taps, 5)).astype(np.float32)                     # [m, k, W]
    padded = np.pad(np.broadcast_to(x.numpy(), (2, branches, length, 5)), [(0, 0), (0, 0), (taps - 1, 0), (0, 0)])
    expected = sum(padded[:, :, taps - 1 - i:taps - 1 - i + length] * kernel[None, :, i, None, :]
                   for i in range(taps))
    native = causal_depthwise(x, tf.constant(kernel)).numpy()                              # eager: the native op
    assert forms == []
    xla = tf.function(causal_depthwise, jit_compile=True)(x, tf.constant(kernel)).numpy()
    assert forms == ["_banded_depthwise" if taps >= parametric.BANDED_MIN_TAPS else "_sliced_depthwise"]
    np.testing.assert_allclose(native, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(xla, expected, rtol=1e-5, atol=1e-4)


def test_banded_depthwise_gradients_match_the_slices(np_rng):
    from primitives.parametric import _banded_depthwise, _sliced_depthwise

    x = tf.constant(np_rng.normal(size=(2, 1, 40, 3)).astype(np.float32))
    taps = tf.constant(np_rng.normal(size=(2, 15, 3)).astype(np.float32))
    grads = []
    for form in (_sliced_depthwise, _banded_depthwise):
        with tf.GradientTape() as tape:
            tape.watch([x, taps])
            loss = tf.reduce_sum(tf.sin(form(x, taps)))
        grads.append([g.numpy() for g in tape.gradient(loss, [x, taps])])
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_masked_softmax_matches_reference_and_ignores_future():
    scores = tf.random.stateless_normal([2, 3, 5, 5], seed=[1, 1])
    probs = primitives.masked_softmax(scores).numpy()
    mask = np.tril(np.ones([5, 5], bool))
    reference = np.where(mask, np.exp(scores.numpy()), 0)
    np.testing.assert_allclose(probs, reference / reference.sum(-1, keepdims=True), rtol=1e-6)
    spiked = scores.numpy().copy()
    spiked[..., 0, 1:] = 1e30  # future keys of row 0
    np.testing.assert_array_equal(primitives.masked_softmax(tf.constant(spiked)).numpy()[..., 0, :], probs[..., 0, :])


def test_kinds_and_weights_metadata():
    assert primitives.get("CONV_1X1").has_weights and not primitives.get("ADD").has_weights
    assert primitives.get("C_MUL").reads == ("in1", "const")
    assert primitives.get("DCONV_3X1").reads == ("in1",)  # depthwise keeps the width: no dim read
    assert primitives.get("T_MAT_MUL").shape(features(Width(1)), features(Width(1))).kind == POSITIONS
    assert primitives.get("RED_SUM").shape(primitives.POSITIONS_SIG).kind == FEATURES


def test_causal_helpers_on_the_last_rows_equal_those_rows_of_the_square(np_rng):
    # [..., Q, K] with the queries the last Q of K positions (how `primer_search.lm.decoding` computes rows)
    from primitives import axes

    p = tf.constant(np_rng.normal(size=(2, 3, 6, 6)), tf.float32)                  # [B, m, S, S]
    square_mask, square_mean = axes.mask_future(p, -7.0).numpy(), axes.causal_mean(p).numpy()
    for q in range(1, 7):
        rows = p[:, :, 6 - q:]                                                      # [B, m, Q, S]
        np.testing.assert_array_equal(axes.mask_future(rows, -7.0).numpy(), square_mask[:, :, 6 - q:])
        np.testing.assert_allclose(axes.causal_mean(rows).numpy(), square_mean[:, :, 6 - q:], rtol=1e-6)
    for t in range(6):
        row = p[:, :, t:t + 1, :t + 1]                                              # [B, m, 1, t+1]: keys 0..t
        np.testing.assert_allclose(axes.causal_mean(row).numpy(), square_mean[:, :, t:t + 1], rtol=1e-6)
    np.testing.assert_array_equal(axes.causal_mask(p[:, :, 4:]).numpy(),
                                  np.tril(np.ones((6, 6), bool))[4:])              # [2, 6]
