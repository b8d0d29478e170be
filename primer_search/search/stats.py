"""Small statistics for measuring noise and confirming results: Student's t distribution, confidence intervals
(of means, and of ratios on the log scale), the paired t-test, Spearman's rank correlation with its interval and
the smallest difference a comparison can detect.

Pure Python (math and statistics only). The t distribution's CDF comes from the regularized incomplete beta
function, evaluated by its continued fraction (modified Lentz's method); quantiles invert the CDF by bisection.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

_NORMAL = statistics.NormalDist()


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"incomplete_beta: found a={a}, b={b}, expected both positive")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"incomplete_beta: found x={x}, expected 0 <= x <= 1")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1) / (a + b + 2):         # the continued fraction converges fast below this point: use symmetry
        return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b
    return math.exp(log_front) * _beta_fraction(a, b, x) / a


def _beta_fraction(a: float, b: float, x: float, iterations: int = 300, eps: float = 1e-15) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, iterations + 1):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return result


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t distribution with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"t_cdf: found df={df}, expected positive degrees of freedom")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t))   # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (0 < p < 1), by bisection on `t_cdf` to about 1e-12."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: found p={p}, expected 0 < p < 1")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def normal_quantile(p: float) -> float:
    return _NORMAL.inv_cdf(p)


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def stdev(values: Sequence[float]) -> float | None:
    """The sample standard deviation (n - 1 in the denominator); None for fewer than two values."""
    return statistics.stdev(values) if len(values) >= 2 else None


def confidence_half_width(values: Sequence[float], level: float = 0.95) -> float | None:
    """Half the width of the two-sided t confidence interval of the mean (None for fewer than two values)."""
    if len(values) < 2:
        return None
    return t_quantile(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def geometric_interval(values: Sequence[float],
                       level: float = 0.95) -> tuple[float | None, tuple[float, float] | None]:
    """The geometric mean of positive ratios (such as speedup factors) and the two-sided t confidence interval of
    the mean of their logarithms, exponentiated (None for fewer than two values; (None, None) for none). Ratios
    average on the log scale: 0.5 and 2 give 1, and the interval stays positive and asymmetric."""
    if not values:
        return None, None
    if min(values) <= 0:
        raise ValueError(f"geometric_interval: found {list(values)}, expected positive ratios")
    logs = [math.log(v) for v in values]
    centre, half = statistics.fmean(logs), confidence_half_width(logs, level)
    return math.exp(centre), None if half is None else (math.exp(centre - half), math.exp(centre + half))


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    """(t, two-sided p) of the paired t-test of mean(a - b) = 0; None for fewer than two pairs. Identical
    differences give t = +-inf and p = 0, or t = 0 and p = 1 when they are all zero."""
    if len(a) != len(b):
        raise ValueError(f"paired_t_test: found {len(a)} and {len(b)} values, expected pairs")
    if len(a) < 2:
        return None
    differences = [x - y for x, y in zip(a, b)]
    centre, spread = statistics.fmean(differences), statistics.stdev(differences)
    if spread == 0.0:
        return (0.0, 1.0) if centre == 0.0 else (math.copysign(math.inf, centre), 0.0)
    t = centre / (spread / math.sqrt(len(differences)))
    return t, 2.0 * t_cdf(-abs(t), len(differences) - 1)


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's on average ranks); None for fewer than three pairs or a constant
    side."""
    if len(x) != len(y):
        raise ValueError(f"spearman: found {len(x)} and {len(y)} values, expected pairs")
    if len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    if len(set(rx)) == 1 or len(set(ry)) == 1:
        return None
    return statistics.correlation(rx, ry)


def spearman_interval(rho: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """A confidence interval for a Spearman correlation `rho` of `n` pairs: Fisher's z-transform with Bonett and
    Wright's (2000) standard error for rank correlations, sqrt((1 + rho^2 / 2) / (n - 3))."""
    if n < 4:
        raise ValueError(f"spearman_interval: found n={n}, expected at least 4 pairs")
    if not -1.0 <= rho <= 1.0:
        raise ValueError(f"spearman_interval: found rho={rho}, expected -1 <= rho <= 1")
    if abs(rho) == 1.0:
        return rho, rho
    half = normal_quantile(0.5 + level / 2) * math.sqrt((1 + rho * rho / 2) / (n - 3))
    return math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half)


def detectable_difference(sigma: float, n: int = 1, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference of means that a one-sided two-sample z rule at level `alpha` detects with
    probability `power`, each side averaging `n` evaluations of standard deviation `sigma`:
    (z_(1-alpha) + z_power) x sigma x sqrt(2 / n); about 3.5 sigma for n = 1 at the defaults."""
    if n < 1:
        raise ValueError(f"detectable_difference: found n={n}, expected at least one evaluation")
    return (normal_quantile(1 - alpha) + normal_quantile(power)) * sigma * math.sqrt(2.0 / n)
