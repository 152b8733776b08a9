"""Customer lifetime value for non-contractual repeat buying: BG/NBD plus Gamma-Gamma.

In a non-contractual setting (a brand's WeCom customers buy whenever they like and never tell
us they have left) a customer who has gone quiet may be between purchases or gone for good.
Two classic models separate the two and forecast what each customer is still worth:

**BG/NBD** (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way: An Alternative to
the Pareto/NBD Model", Marketing Science 24(2), 275-284) models *how often* and *how long*:

* while alive, a customer buys as a Poisson process with rate λ, λ ~ Gamma(r, α) across
  customers;
* after each purchase the customer drops out with probability p, p ~ Beta(a, b).

Per customer it needs three numbers, in one time unit of the caller's choice (Siyu uses days;
the CDNOW test data uses weeks): ``x`` = frequency, the number of *repeat* purchases;
``t_x`` = recency, the customer's age at the latest purchase (0 when x = 0); ``T`` = the
customer's age at the end of the observation window (time since the first purchase).
The individual likelihood is (eq. 6 of the paper)::

    L = B(a, b+x)/B(a, b) · Γ(r+x)/Γ(r) · α^r / (α+T)^(r+x)
        + [x > 0] · B(a+1, b+x-1)/B(a, b) · Γ(r+x)/Γ(r) · α^r / (α+t_x)^(r+x)

computed here in logs (``gammaln``, ``betaln``) with a log-sum-exp of the two terms, so that
customers with hundreds of purchases neither overflow nor underflow; the second term is left
out (log 0) when x = 0. Parameters are fitted by maximum likelihood over their logarithms
(so they stay positive) with ``scipy.optimize.minimize``. From the fitted model:

* P(alive | x, t_x, T) = 1 / (1 + [x > 0] · a/(b+x-1) · ((α+T)/(α+t_x))^(r+x)) (Fader,
  Hardie & Lee 2008, note "Computing P(alive) Using the BG/NBD Model"); it is 1 for x = 0
  because, in this model, a customer can only drop out right after a purchase;
* E[Y(t) | x, t_x, T], the expected purchases in the next t periods (eq. 10)::

    (a+b+x-1)/(a-1) · [1 - ((α+T)/(α+T+t))^(r+x) · ₂F₁(r+x, b+x; a+b+x-1; t/(α+T+t))]
    ----------------------------------------------------------------------------------
               1 + [x > 0] · a/(b+x-1) · ((α+T)/(α+t_x))^(r+x)

* E[X(t)] for a brand-new customer (eq. 9):
  (a+b-1)/(a-1) · [1 - (α/(α+t))^r · ₂F₁(r, b; a+b-1; t/(α+t))].

Both brackets are evaluated after Euler's transformation ₂F₁(A, B; C; z) =
(1-z)^(C-A-B) ₂F₁(C-A, C-B; C; z), which turns (1-z)^(r+x) · ₂F₁(r+x, b+x; a+b+x-1; z) into
(1-z)^(a-1) · ₂F₁(a+b-1-r, a-1; a+b+x-1; z): the same number, but the first two arguments no
longer grow with x, so scipy's ``hyp2f1`` stays finite and accurate for customers with hundreds
of purchases over long horizons, where the paper's form overflows.

**Gamma-Gamma** (Fader, Hardie & Lee 2005, "RFM and CLV: Using Iso-Value Curves for Customer
Base Analysis", JMR 42(4); Fader & Hardie 2013 note "The Gamma-Gamma Model of Monetary Value")
models *how much*: a customer's spend per transaction is Gamma(p, ν), ν ~ Gamma(q, γ) across
customers (γ is called ``v`` here, as lifetimes does). It is fitted on repeat customers only
(x > 0) from x and their average spend per transaction m_x, whose density is::

    f(m_x | x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q · m_x^(px-1) · x^(px) / (γ + m_x x)^(px+q)

and gives E[M | x, m_x] = (p (γ + x m_x)) / (p x + q - 1): a weighted average of the
population mean p γ / (q - 1) and the customer's own mean m_x, the weight on m_x growing
with x. The model assumes spend is independent of frequency; check the correlation before
trusting it (for CDNOW it is about 0.11).

``predict`` combines both: P(alive), expected purchases and expected value (purchases times
expected spend per purchase) over the next t periods. It does not discount; callers that want
a present value or integer fen apply that themselves.

Why not the ``lifetimes`` package, which implements all of this: it has had no release since
0.11.3 (2020) and is unmaintained, and it would bring pandas, autograd and dill into the
dependency tree for a few closed-form formulas. The formulas above are short and published,
and the tests check them against the published CDNOW estimates, so we keep them on NumPy and
SciPy alone (lifetimes' source was read for reference only; nothing is copied from it).

Caveat: the BG/NBD expectations divide by a - 1, so they are undefined at exactly a = 1 (a
fitted a does not land there in practice).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

FloatArray = NDArray[np.float64]

MIN_CUSTOMERS = 10  # below this the parameters are not identified; refuse rather than guess
# Log-parameters are kept in [-15, 15] (values 3e-7 … 3e6). An optimum on that edge means the
# data do not pin the parameter down (e.g. nobody ever drops out), so the fit is refused.
_LOG_BOUND = 15.0
_BAD_OBJECTIVE = 1e10  # stands in for a non-finite objective so L-BFGS-B can back off


class FitError(ValueError):
    """The maximum-likelihood fit did not converge to a usable optimum."""


# --------------------------------------------------------------------------- input checks


def _as_float_array(name: str, values: ArrayLike) -> FloatArray:
    """One numeric, finite, non-negative array; every model input has to be all three."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    if np.any(array < 0):
        raise ValueError(f"{name} must not be negative (smallest value {array.min():g})")
    return array


def _check_frequency(x: FloatArray) -> None:
    """Frequency counts repeat purchases: a fraction means the caller passed something else."""
    if np.any(x != np.floor(x)):
        raise ValueError("frequency x must be a whole number of repeat purchases")


def _customers(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[FloatArray, ...]:
    """Validated, broadcast (x, t_x, T); recency cannot exceed the customer's age."""
    x_arr = _as_float_array("frequency x", x)
    t_x_arr = _as_float_array("recency t_x", t_x)
    T_arr = _as_float_array("age T", T)
    _check_frequency(x_arr)
    try:
        x_arr, t_x_arr, T_arr = np.broadcast_arrays(x_arr, t_x_arr, T_arr)
    except ValueError as exc:
        raise ValueError(f"x, t_x and T must have matching shapes: {exc}") from exc
    if np.any(t_x_arr > T_arr):
        worst = int(np.argmax(t_x_arr - T_arr))
        raise ValueError(
            "recency t_x must not exceed age T "
            f"(customer #{worst}: t_x={t_x_arr.flat[worst]:g} > T={T_arr.flat[worst]:g})"
        )
    return x_arr, t_x_arr, T_arr


def _horizon(t: ArrayLike) -> FloatArray:
    return _as_float_array("horizon t", t)


def _check_enough(n: int, what: str) -> None:
    if n < MIN_CUSTOMERS:
        raise ValueError(f"need at least {MIN_CUSTOMERS} {what} to fit, got {n}")


def _check_one_dimensional(**arrays: FloatArray) -> None:
    """Fitting wants one row per customer; a matrix here is almost certainly a caller bug."""
    for name, array in arrays.items():
        if array.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional (one value per customer)")


def _check_positive_parameters(**parameters: float) -> None:
    for name, value in parameters.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"model parameter {name} must be a positive number, got {value!r}")


# --------------------------------------------------------------------------- optimisation


def _maximise_likelihood(
    mean_log_likelihood: Callable[[FloatArray], float],
    start: FloatArray,
    *,
    penalizer: float,
    model: str,
) -> FloatArray:
    """Maximise the (mean) log-likelihood over log-parameters; return the parameters.

    The mean rather than the sum keeps the objective's scale, and so the optimiser's
    tolerances, independent of the number of customers. L-BFGS-B is fast on this smooth
    objective; when its line search gives up near the optimum (finite-difference gradients are
    noisy there) Nelder-Mead finishes from where it stopped.
    """
    if not (math.isfinite(penalizer) and penalizer >= 0):
        raise ValueError(f"penalizer must be a non-negative number, got {penalizer!r}")

    def objective(log_params: FloatArray) -> float:
        params = np.exp(log_params)
        value = -mean_log_likelihood(params) + penalizer * float(np.sum(params**2))
        return value if math.isfinite(value) else _BAD_OBJECTIVE

    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(start)
    result = optimize.minimize(
        objective,
        start,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 2000},
    )
    if not result.success:
        result = optimize.minimize(
            objective,
            result.x,
            method="Nelder-Mead",
            bounds=bounds,
            options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000, "maxfev": 40000},
        )
    if not result.success or not math.isfinite(result.fun) or result.fun >= _BAD_OBJECTIVE:
        raise FitError(f"{model} fit did not converge: {result.message}")
    if np.any(np.abs(result.x) >= _LOG_BOUND - 1e-6):
        raise FitError(
            f"{model} fit did not converge: a parameter ran to the edge of its range "
            f"({np.exp(result.x)}); the data do not identify the model (for instance, no "
            "customer looks lapsed) — more customers or a longer observation window may help"
            + ("" if penalizer else ", and so may a small penalizer")
        )
    return np.exp(result.x)


# --------------------------------------------------------------------------- BG/NBD


@dataclass(frozen=True)
class BgNbdModel:
    """BG/NBD parameters, with the fit's total log-likelihood when it came from ``fit_bgnbd``.

    Times (t, t_x, T) are in whatever unit the model was fitted in; α carries that unit.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = math.nan
    n_customers: int = 0

    def __post_init__(self) -> None:
        _check_positive_parameters(r=self.r, alpha=self.alpha, a=self.a, b=self.b)

    def individual_log_likelihood(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """Log-likelihood of each customer's (x, t_x, T) under these parameters."""
        return _bgnbd_log_likelihood(self.r, self.alpha, self.a, self.b, *_customers(x, t_x, T))

    def probability_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """P(customer is still alive at T | x, t_x, T); exactly 1 when x == 0."""
        x_arr, t_x_arr, T_arr = _customers(x, t_x, T)
        return special.expit(-self._log_dropout_odds(x_arr, t_x_arr, T_arr))

    def expected_purchases(
        self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """E[purchases in (T, T + t] | x, t_x, T], the conditional expectation (paper eq. 10)."""
        t_arr = _horizon(t)
        x_arr, t_x_arr, T_arr = _customers(x, t_x, T)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t_arr / (alpha + T_arr + t_arr)
        bracket = _expectation_bracket(r, a, b, x_arr, z)
        alive = special.expit(-self._log_dropout_odds(x_arr, t_x_arr, T_arr))
        return (a + b + x_arr - 1) / (a - 1) * bracket * alive

    def expected_purchases_new_customer(self, t: ArrayLike) -> FloatArray:
        """E[X(t)]: expected repeat purchases by age t of a customer we know nothing about."""
        t_arr = _horizon(t)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t_arr / (alpha + t_arr)
        return (a + b - 1) / (a - 1) * _expectation_bracket(r, a, b, np.zeros_like(z), z)

    def _log_dropout_odds(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        """log of a/(b+x-1) · ((α+T)/(α+t_x))^(r+x): the odds of having dropped out; -inf at
        x == 0. Kept in logs so that P(alive) = expit(-odds) never overflows."""
        repeat = x > 0
        x_safe = np.where(repeat, x, 1.0)  # b + x - 1 may be <= 0 when x == 0
        log_odds = (
            np.log(self.a)
            - np.log(self.b + x_safe - 1)
            + (self.r + x_safe) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
        )
        return np.where(repeat, log_odds, -np.inf)


def _expectation_bracket(r: float, a: float, b: float, x: FloatArray, z: FloatArray) -> FloatArray:
    """1 - (1-z)^(r+x) · ₂F₁(r+x, b+x; a+b+x-1; z), the bracket of the BG/NBD expectations,
    computed as 1 - (1-z)^(a-1) · ₂F₁(a+b-1-r, a-1; a+b+x-1; z) (Euler's transformation; see
    the module docstring for why).

    The product is positive whenever a + b + x - 1 > 0 (the untransformed series has only
    positive terms); only a new customer's a + b - 1 can be negative, and then the sign is
    kept. For the positive case ``expm1`` keeps precision at short horizons, where the bracket
    is close to 0.
    """
    hyper = special.hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
    with np.errstate(divide="ignore"):
        log_term = (a - 1) * np.log1p(-z) + np.log(np.abs(hyper))
    # 0.0 - expm1(0) is +0.0 (a bare negation would give -0.0 at t = 0)
    return np.where(hyper > 0, 0.0 - np.expm1(log_term), 1 - np.sign(hyper) * np.exp(log_term))


def _bgnbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    """Per-customer BG/NBD log-likelihood (paper eq. 6), with log-sum-exp for the two terms."""
    common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) - special.betaln(a, b)
    still_alive = special.betaln(a, b + x) - (r + x) * np.log(alpha + T)
    repeat = x > 0
    x_safe = np.where(repeat, x, 1.0)  # betaln(a+1, b-1) is meaningless for x == 0
    dropped_out = np.where(
        repeat,
        special.betaln(a + 1, b + x_safe - 1) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    return common + np.logaddexp(still_alive, dropped_out)


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, penalizer: float = 0.0) -> BgNbdModel:
    """Fit BG/NBD by maximum likelihood to one (x, t_x, T) row per customer.

    ``penalizer`` adds ``penalizer · Σ θ²`` (θ = r, α, a, b) to the mean negative
    log-likelihood, which keeps parameters finite on small or degenerate samples; 0.001–0.1
    is the usual range. Raises ``ValueError`` for bad input and ``FitError`` (a ValueError)
    when the optimiser does not converge.
    """
    x_arr, t_x_arr, T_arr = _customers(x, t_x, T)
    _check_one_dimensional(x=x_arr, t_x=t_x_arr, T=T_arr)
    _check_enough(x_arr.size, "customers")
    if not np.any(x_arr > 0):
        raise ValueError("BG/NBD needs at least one customer with a repeat purchase (x > 0)")
    if not np.any(T_arr > 0):
        raise ValueError("BG/NBD needs customers observed for some time (T > 0)")

    def mean_log_likelihood(params: FloatArray) -> float:
        r, alpha, a, b = params
        return float(np.mean(_bgnbd_log_likelihood(r, alpha, a, b, x_arr, t_x_arr, T_arr)))

    # r = a = b = 1 is a neutral shape; α carries the time unit, so start it at the mean age
    # (a purchase rate of about one per observed lifetime) instead of at 1.
    start = np.log([1.0, max(float(np.mean(T_arr)), 1e-3), 1.0, 1.0])
    r, alpha, a, b = _maximise_likelihood(
        mean_log_likelihood, start, penalizer=penalizer, model="BG/NBD"
    )
    total = float(np.sum(_bgnbd_log_likelihood(r, alpha, a, b, x_arr, t_x_arr, T_arr)))
    return BgNbdModel(
        r=float(r),
        alpha=float(alpha),
        a=float(a),
        b=float(b),
        log_likelihood=total,
        n_customers=int(x_arr.size),
    )


# --------------------------------------------------------------------------- Gamma-Gamma


def _spend(x: ArrayLike, m_x: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x_arr = _as_float_array("frequency x", x)
    m_arr = _as_float_array("average spend m_x", m_x)
    _check_frequency(x_arr)
    try:
        x_arr, m_arr = np.broadcast_arrays(x_arr, m_arr)
    except ValueError as exc:
        raise ValueError(f"x and m_x must have matching shapes: {exc}") from exc
    return x_arr, m_arr


@dataclass(frozen=True)
class GammaGammaModel:
    """Gamma-Gamma spend parameters (p, q, v = γ), with the fit's total log-likelihood."""

    p: float
    q: float
    v: float
    log_likelihood: float = math.nan
    n_customers: int = 0

    def __post_init__(self) -> None:
        _check_positive_parameters(p=self.p, q=self.q, v=self.v)

    def individual_log_likelihood(self, x: ArrayLike, m_x: ArrayLike) -> FloatArray:
        """Log-density of each repeat customer's average spend m_x given x (x > 0, m_x > 0)."""
        x_arr, m_arr = _spend(x, m_x)
        if np.any(x_arr <= 0) or np.any(m_arr <= 0):
            raise ValueError("the spend likelihood needs x > 0 and m_x > 0 for every customer")
        return _gamma_gamma_log_likelihood(self.p, self.q, self.v, x_arr, m_arr)

    def population_mean_spend(self) -> float:
        """E[M] = p v / (q - 1), what we expect a customer with no repeat purchase to spend."""
        self._check_mean_exists()
        return self.p * self.v / (self.q - 1)

    def conditional_expected_average_profit(self, x: ArrayLike, m_x: ArrayLike) -> FloatArray:
        """E[M | x, m_x] = p (v + x m_x) / (p x + q - 1), each customer's expected spend per
        transaction; m_x is ignored (may be 0) where x == 0, which gives the population mean."""
        self._check_mean_exists()
        x_arr, m_arr = _spend(x, m_x)
        m_used = np.where(x_arr > 0, m_arr, 0.0)
        return self.p * (self.v + x_arr * m_used) / (self.p * x_arr + self.q - 1)

    def _check_mean_exists(self) -> None:
        if self.q <= 1:
            raise ValueError(
                f"Gamma-Gamma mean spend is infinite for q <= 1 (q = {self.q:g}); "
                "the spend data are too heavy-tailed for this model"
            )


def _gamma_gamma_log_likelihood(
    p: float, q: float, v: float, x: FloatArray, m_x: FloatArray
) -> FloatArray:
    """Per-customer log-density of the average spend m_x given x (Fader & Hardie 2013)."""
    px = p * x
    return (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m_x)
        + px * np.log(x)
        - (px + q) * np.log(v + m_x * x)
    )


def fit_gamma_gamma(x: ArrayLike, m_x: ArrayLike, *, penalizer: float = 0.0) -> GammaGammaModel:
    """Fit Gamma-Gamma by maximum likelihood on the repeat customers (x > 0) among the rows.

    Rows with x == 0 are skipped: they carry no information about spend per repeat purchase
    (their m_x is usually recorded as 0). Every repeat customer needs m_x > 0. ``penalizer``
    works as in ``fit_bgnbd``.
    """
    x_arr, m_arr = _spend(x, m_x)
    _check_one_dimensional(x=x_arr, m_x=m_arr)
    repeat = x_arr > 0
    x_rep, m_rep = x_arr[repeat], m_arr[repeat]
    _check_enough(x_rep.size, "repeat customers (x > 0)")
    if np.any(m_rep <= 0):
        raise ValueError("average spend m_x must be positive for every repeat customer (x > 0)")

    def mean_log_likelihood(params: FloatArray) -> float:
        p, q, v = params
        return float(np.mean(_gamma_gamma_log_likelihood(p, q, v, x_rep, m_rep)))

    # p = 1, q = 2 keeps the population mean p v / (q - 1) finite; v = mean spend then starts
    # the model at the observed mean, which fixes the currency unit.
    start = np.log([1.0, 2.0, float(np.mean(m_rep))])
    p, q, v = _maximise_likelihood(
        mean_log_likelihood, start, penalizer=penalizer, model="Gamma-Gamma"
    )
    total = float(np.sum(_gamma_gamma_log_likelihood(p, q, v, x_rep, m_rep)))
    return GammaGammaModel(
        p=float(p), q=float(q), v=float(v), log_likelihood=total, n_customers=int(x_rep.size)
    )


# --------------------------------------------------------------------------- combined


@dataclass(frozen=True)
class ValueForecast:
    """Per-customer forecast over a horizon; floats (callers round to fen)."""

    probability_alive: FloatArray
    expected_purchases: FloatArray
    expected_average_spend: FloatArray
    expected_value: FloatArray


def predict(
    t_days: ArrayLike,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    m_x: ArrayLike,
    *,
    bgnbd: BgNbdModel,
    gamma_gamma: GammaGammaModel,
) -> ValueForecast:
    """P(alive), expected purchases and expected value over the next ``t_days`` per customer.

    ``t_days``, ``t_x`` and ``T`` must be in the unit ``bgnbd`` was fitted in: days throughout
    Siyu (the CDNOW tests pass weeks). Expected value = expected purchases × E[spend per
    purchase | x, m_x], undiscounted: the Gamma-Gamma model assumes spend and frequency are
    independent, so the expectation of the product is the product of the expectations.
    """
    purchases = bgnbd.expected_purchases(t_days, x, t_x, T)
    spend = gamma_gamma.conditional_expected_average_profit(x, m_x)
    return ValueForecast(
        probability_alive=bgnbd.probability_alive(x, t_x, T),
        expected_purchases=purchases,
        expected_average_spend=spend,
        expected_value=purchases * spend,
    )
