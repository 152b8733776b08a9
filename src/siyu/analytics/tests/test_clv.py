"""BG/NBD and Gamma-Gamma: fits on the CDNOW sample against the published estimates,
properties that follow from the formulas by hand, and clear errors for bad input.

No database: these tests request no ``db`` fixture.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize

from siyu.analytics import clv
from siyu.analytics.clv import BgNbdModel, FitError, GammaGammaModel

DATA = Path(__file__).parent / "data"

# Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way": the BG/NBD estimates
# and log-likelihood for the CDNOW calibration data.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BGNBD_LL = -9582.4
# lifetimes documentation (docs/Quickstart.md in its repository, "Estimating customer lifetime
# value using the Gamma-Gamma model"): "fitted with 946 subjects, p: 6.25, q: 3.74, v: 15.45".
# Fader & Hardie's note "The Gamma-Gamma Model of Monetary Value" (2013) reports p = 6.25,
# q = 3.74, γ = 15.44; the two agree within 0.1 %, so either passes the 1 % check.
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "v": 15.45}
# The log-likelihood at the Gamma-Gamma optimum as CLVTools' correctness test uses it
# (tests/testthat/test_correctness_gg.R, correct.LL = -4055.9177).
PUBLISHED_GAMMA_GAMMA_LL = -4055.9177


def _load(name: str) -> np.ndarray:
    return np.loadtxt(DATA / name, delimiter=",", skiprows=1)


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    rows = _load("cdnow_customers_summary.csv")
    return {"x": rows[:, 1], "t_x": rows[:, 2], "T": rows[:, 3]}


@pytest.fixture(scope="module")
def cdnow_spend() -> dict[str, np.ndarray]:
    rows = _load("cdnow_customers_summary_with_transactions.csv")
    return {"x": rows[:, 1], "t_x": rows[:, 2], "T": rows[:, 3], "m_x": rows[:, 4]}


@pytest.fixture(scope="module")
def bgnbd(cdnow) -> BgNbdModel:
    return clv.fit_bgnbd(cdnow["x"], cdnow["t_x"], cdnow["T"])


@pytest.fixture(scope="module")
def gamma_gamma(cdnow_spend) -> GammaGammaModel:
    return clv.fit_gamma_gamma(cdnow_spend["x"], cdnow_spend["m_x"])


@pytest.fixture
def published() -> BgNbdModel:
    return BgNbdModel(**PUBLISHED_BGNBD)


# --------------------------------------------------------------------------- the data


def test_cdnow_files_hold_the_published_sample(cdnow, cdnow_spend):
    assert cdnow["x"].size == 2357
    assert int(cdnow["x"].sum()) == 2457  # repeat transactions in the 39-week calibration
    for column in ("x", "t_x", "T"):
        np.testing.assert_array_equal(cdnow[column], cdnow_spend[column])
    assert int(np.count_nonzero(cdnow_spend["x"])) == 946


# --------------------------------------------------------------------------- BG/NBD fit


def test_bgnbd_fit_matches_published_cdnow_estimates(bgnbd):
    for name, value in PUBLISHED_BGNBD.items():
        assert getattr(bgnbd, name) == pytest.approx(value, rel=0.01), name
    assert bgnbd.n_customers == 2357


def test_bgnbd_log_likelihood_is_the_published_value(bgnbd, cdnow, published):
    assert bgnbd.log_likelihood == pytest.approx(PUBLISHED_BGNBD_LL, abs=0.1)
    # the stored value is the sum of the individual terms at the fitted parameters ...
    individual = bgnbd.individual_log_likelihood(cdnow["x"], cdnow["t_x"], cdnow["T"])
    assert individual.sum() == pytest.approx(bgnbd.log_likelihood, abs=1e-9)
    # ... and the published (rounded) parameters are no better than the optimum
    at_published = published.individual_log_likelihood(cdnow["x"], cdnow["t_x"], cdnow["T"])
    assert bgnbd.log_likelihood >= at_published.sum() > PUBLISHED_BGNBD_LL - 0.1


def test_bgnbd_fit_does_not_depend_on_the_time_unit(bgnbd, cdnow):
    """The same customers in days: α scales by 7, the shapes stay (and the start point copes)."""
    in_days = clv.fit_bgnbd(cdnow["x"], cdnow["t_x"] * 7, cdnow["T"] * 7)
    assert in_days.alpha == pytest.approx(bgnbd.alpha * 7, rel=1e-3)
    for name in ("r", "a", "b"):
        assert getattr(in_days, name) == pytest.approx(getattr(bgnbd, name), rel=1e-3), name


def test_penalizer_shrinks_the_parameters(bgnbd, cdnow):
    penalized = clv.fit_bgnbd(cdnow["x"], cdnow["t_x"], cdnow["T"], penalizer=0.01)
    norm = lambda m: m.r**2 + m.alpha**2 + m.a**2 + m.b**2  # noqa: E731
    assert norm(penalized) < norm(bgnbd)
    assert penalized.log_likelihood < bgnbd.log_likelihood


# --------------------------------------------------------------------------- BG/NBD predictions


def test_conditional_expectation_matches_published_examples(bgnbd, published):
    # Fader, Hardie & Lee (2005), conditional expectations: customer 1 (x = 2, t_x = 30.43,
    # T = 38.86) is expected to make 1.226 purchases in the next 39 weeks.
    assert published.expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)
    # lifetimes docs (Quickstart, "Ranking customers"): customer 1516 (x = 26, t_x = 30.86,
    # T = 31) is expected to make 0.710623 purchases in the next week.
    assert bgnbd.expected_purchases(1, 26, 30.86, 31.0) == pytest.approx(0.710623, rel=1e-4)


def test_probability_alive_by_hand(published):
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    x, t_x, T = 2, 30.43, 38.86
    by_hand = 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    assert published.probability_alive(x, t_x, T) == pytest.approx(by_hand, rel=1e-12)


def test_probability_alive_is_one_without_repeat_purchases(bgnbd):
    T = np.array([0.0, 1.0, 10.0, 38.86, 1000.0])
    alive = bgnbd.probability_alive(np.zeros_like(T), np.zeros_like(T), T)
    np.testing.assert_array_equal(alive, np.ones_like(T))


def test_expected_purchases_grow_with_the_horizon(bgnbd):
    horizons = np.array([0.0, 0.5, 1.0, 4.0, 13.0, 39.0, 52.0, 104.0])
    for x, t_x, T in [(0, 0.0, 38.86), (2, 30.43, 38.86), (7, 29.43, 38.86), (26, 30.86, 31.0)]:
        expected = bgnbd.expected_purchases(horizons, x, t_x, T)
        assert expected[0] == 0.0
        assert np.all(np.diff(expected) > 0), (x, t_x, T, expected)


def test_recent_buyer_is_more_alive_than_one_who_went_quiet(bgnbd):
    x, T = 10, 39.0
    recent, long_ago = bgnbd.probability_alive(x, [38.0, 5.0], T)
    assert recent > 0.9 > 0.1 > long_ago
    recent_buys, quiet_buys = bgnbd.expected_purchases(10, x, [38.0, 5.0], T)
    assert recent_buys > quiet_buys


def test_new_customer_expectation(bgnbd):
    t = np.array([0.0, 1.0, 13.0, 39.0, 78.0])
    unconditional = bgnbd.expected_purchases_new_customer(t)
    assert unconditional[0] == 0.0
    assert np.all(np.diff(unconditional) > 0)
    # a customer seen for no time at all is a new customer: the conditional formula agrees
    conditional = bgnbd.expected_purchases(t, 0, 0.0, 0.0)
    np.testing.assert_allclose(conditional, unconditional, rtol=1e-12)
    # at the start everybody is alive and buys at the mean rate E[λ] = r / α
    tiny = 1e-6
    assert bgnbd.expected_purchases_new_customer(tiny) / tiny == pytest.approx(
        bgnbd.r / bgnbd.alpha, rel=1e-4
    )


def test_lifetime_purchases_of_a_new_customer_by_hand():
    """With a > 1 a new customer makes E[1/p] = (a+b-1)/(a-1) repeat purchases in all: each
    repeat purchase is the last with probability p, p ~ Beta(a, b)."""
    model = BgNbdModel(r=0.5, alpha=10.0, a=2.5, b=3.0)
    eventually = model.expected_purchases_new_customer(1e9)
    assert eventually == pytest.approx((2.5 + 3.0 - 1) / (2.5 - 1), rel=1e-3)


def test_predictions_are_vectorised_and_survive_heavy_buyers(bgnbd, cdnow):
    expected = bgnbd.expected_purchases(39, cdnow["x"], cdnow["t_x"], cdnow["T"])
    alive = bgnbd.probability_alive(cdnow["x"], cdnow["t_x"], cdnow["T"])
    assert expected.shape == alive.shape == (2357,)
    assert np.all(np.isfinite(expected)) and np.all(expected >= 0)
    assert np.all((alive > 0) & (alive <= 1))
    # scalars broadcast against arrays; hundreds of purchases over years of horizon neither
    # overflow nor give NaN (the paper's form of ₂F₁ overflows here)
    horizons = np.array([1.0, 39.0, 520.0, 5200.0])
    for x in (300, 1000):
        heavy = bgnbd.expected_purchases(horizons, x, 38.0, 39.0)
        assert np.all(np.isfinite(heavy)) and np.all(np.diff(heavy) > 0) and heavy[0] > 0, x
    assert bgnbd.probability_alive(300, 1.0, 39.0) == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------- Gamma-Gamma


def test_gamma_gamma_fit_matches_published_cdnow_estimates(gamma_gamma):
    for name, value in PUBLISHED_GAMMA_GAMMA.items():
        assert getattr(gamma_gamma, name) == pytest.approx(value, rel=0.01), name
    assert gamma_gamma.n_customers == 946
    assert gamma_gamma.log_likelihood == pytest.approx(PUBLISHED_GAMMA_GAMMA_LL, abs=0.1)


def test_conditional_expected_average_profit(gamma_gamma, cdnow_spend):
    # lifetimes docs (Quickstart): customers 1, 2 and 3 -> 24.658619, 18.911489, 35.170981
    first = gamma_gamma.conditional_expected_average_profit(
        cdnow_spend["x"][:3], cdnow_spend["m_x"][:3]
    )
    np.testing.assert_allclose(first, [24.658619, 18.911489, 35.170981], rtol=1e-4)
    # no repeat purchase: the population mean p v / (q - 1), whatever m_x says
    g = gamma_gamma
    assert g.population_mean_spend() == pytest.approx(g.p * g.v / (g.q - 1))
    assert g.conditional_expected_average_profit(0, 999.0) == pytest.approx(
        g.population_mean_spend()
    )
    # the more purchases, the more the customer's own average counts
    shrunk = g.conditional_expected_average_profit([1, 10, 100, 10_000], 100.0)
    assert np.all(np.diff(shrunk) > 0) and shrunk[-1] == pytest.approx(100.0, rel=1e-3)


def test_predict_combines_both_models(bgnbd, gamma_gamma, cdnow_spend):
    d = cdnow_spend
    forecast = clv.predict(
        39, d["x"], d["t_x"], d["T"], d["m_x"], bgnbd=bgnbd, gamma_gamma=gamma_gamma
    )
    assert forecast.expected_value.shape == (2357,)
    np.testing.assert_allclose(
        forecast.expected_value, forecast.expected_purchases * forecast.expected_average_spend
    )
    np.testing.assert_array_equal(forecast.probability_alive[d["x"] == 0], 1.0)
    assert forecast.expected_value[0] == pytest.approx(
        bgnbd.expected_purchases(39, 2, 30.43, 38.86) * 24.658619, rel=1e-4
    )


# --------------------------------------------------------------------------- bad input

GOOD = {"x": [0, 1, 2, 3, 0, 5, 1, 0, 2, 4], "t_x": [0, 3, 8, 9, 0, 9, 2, 0, 7, 6], "T": [10] * 10}


def _with(**changes) -> dict:
    return {**GOOD, **changes}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with(x=[-1, *GOOD["x"][1:]]), "frequency x must not be negative"),
        (_with(t_x=[0, -3, *GOOD["t_x"][2:]]), "recency t_x must not be negative"),
        (_with(T=[-10] * 10), "age T must not be negative"),
        (_with(t_x=[0, 11, *GOOD["t_x"][2:]]), r"recency t_x must not exceed age T \(customer #1"),
        (_with(x=[0, 1.5, *GOOD["x"][2:]]), "frequency x must be a whole number"),
        (_with(x=[math.nan, *GOOD["x"][1:]]), "frequency x must be finite"),
        (_with(x=["a", *GOOD["x"][1:]]), "frequency x must be numeric"),
        (_with(T=[10] * 9), "must have matching shapes"),
        ({k: v[:5] for k, v in GOOD.items()}, "need at least 10 customers to fit, got 5"),
        (_with(x=[0] * 10, t_x=[0] * 10), "at least one customer with a repeat purchase"),
        ({k: [v] for k, v in GOOD.items()}, "must be one-dimensional"),
    ],
)
def test_bgnbd_fit_rejects_bad_input(data, message):
    with pytest.raises(ValueError, match=message):
        clv.fit_bgnbd(data["x"], data["t_x"], data["T"])


def test_predictions_reject_bad_input(published):
    with pytest.raises(ValueError, match="horizon t must not be negative"):
        published.expected_purchases(-1, 2, 3, 4)
    with pytest.raises(ValueError, match="recency t_x must not exceed age T"):
        published.probability_alive(2, 5, 4)
    with pytest.raises(ValueError, match="model parameter r must be a positive number"):
        BgNbdModel(r=-0.2, alpha=4, a=0.8, b=2.4)
    with pytest.raises(ValueError, match="penalizer must be a non-negative number"):
        clv.fit_bgnbd(GOOD["x"], GOOD["t_x"], GOOD["T"], penalizer=-1)


def test_gamma_gamma_rejects_bad_input():
    x = [1, 2, 3, 1, 4, 2, 1, 5, 2, 3]
    m_x = [10.0, 12.5, 30.0, 8.0, 22.0, 15.0, 9.5, 40.0, 11.0, 18.0]
    with pytest.raises(ValueError, match="need at least 10 repeat customers"):
        clv.fit_gamma_gamma([0, *x[1:]], m_x)
    with pytest.raises(ValueError, match="average spend m_x must be positive"):
        clv.fit_gamma_gamma(x, [0.0, *m_x[1:]])
    with pytest.raises(ValueError, match="average spend m_x must not be negative"):
        clv.fit_gamma_gamma(x, [-5.0, *m_x[1:]])
    with pytest.raises(ValueError, match="frequency x must be a whole number"):
        clv.fit_gamma_gamma([1.5, *x[1:]], m_x)
    with pytest.raises(ValueError, match="mean spend is infinite for q <= 1"):
        GammaGammaModel(p=6, q=0.9, v=15).conditional_expected_average_profit(2, 20.0)


def test_fit_that_does_not_converge_raises(monkeypatch):
    failed = optimize.OptimizeResult(
        x=np.zeros(4), fun=1.0, success=False, message="Maximum number of iterations exceeded"
    )
    monkeypatch.setattr(clv.optimize, "minimize", lambda *args, **kwargs: failed)
    with pytest.raises(FitError, match="BG/NBD fit did not converge: Maximum number of"):
        clv.fit_bgnbd(GOOD["x"], GOOD["t_x"], GOOD["T"])


def test_fit_that_runs_to_the_edge_raises(monkeypatch):
    edge = optimize.OptimizeResult(
        x=np.array([0.0, 0.0, 15.0]), fun=1.0, success=True, message="converged"
    )
    monkeypatch.setattr(clv.optimize, "minimize", lambda *args, **kwargs: edge)
    with pytest.raises(FitError, match="ran to the edge of its range"):
        clv.fit_gamma_gamma([1, 2, 3, 1, 4, 2, 1, 5, 2, 3], [10.0] * 10)
    assert issubclass(FitError, ValueError)
