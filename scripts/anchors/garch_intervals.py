"""Interval anchor for issue [forecasts]: naive point forecast + GARCH(1,1) with Student-t innovations on daily
log-returns (the `arch` package), refit every 30 days on the trailing 2,000 returns, scored on BTC-daily-v1's test
targets (rows 2865..4092 of the 4,093 closes). Prints one JSON line: coverage, mean width (% of the last close),
Winkler score (USD) at 80 % and 95 %, and the Brier score of P(up) (0.5 - the model has zero mean).

    python3 -m venv ~/.venvs/garch && ~/.venvs/garch/bin/pip install arch
    ~/.venvs/garch/bin/python scripts/anchors/garch_intervals.py [DATA_DIR]
"""
import csv
import json
import math
import sys

import numpy as np
from arch import arch_model

DATA = sys.argv[1] if len(sys.argv) > 1 else "data"
FILES = ["kraken_XBTUSD_1440.csv", "kraken_XBTUSD_1440_2024.csv"]
LEVELS = [0.8, 0.95]
REFIT_DAYS, TRAILING = 30, 2000

closes = []
for name in FILES:
    with open(f"{DATA}/{name}") as handle:
        closes += [float(row[4]) for row in csv.reader(handle) if row]
closes = np.array(closes)
returns = np.diff(np.log(closes))  # returns[k] = log(closes[k + 1] / closes[k])
test_start = int(len(closes) * 0.7)

rows = {level: {"hits": 0, "width": 0.0, "winkler": 0.0} for level in LEVELS}
brier, count = 0.0, 0
params = variance = None
for index in range(test_start, len(closes)):
    # Returns known before the target: returns[: index - 1] (the last is log(closes[index-1] / closes[index-2])).
    known = returns[: index - 1]
    if (index - test_start) % REFIT_DAYS == 0:
        fit = arch_model(known[-TRAILING:] * 100, mean="Zero", vol="GARCH", p=1, q=1, dist="t").fit(disp="off")
        params = fit.params
        variance = fit.conditional_volatility[-1] ** 2
        last_return = known[-1] * 100
    else:
        last_return = known[-1] * 100
    # One step ahead: sigma^2 = omega + alpha r^2 + beta sigma^2 (in percent^2).
    variance = params["omega"] + params["alpha[1]"] * last_return**2 + params["beta[1]"] * variance
    sigma = math.sqrt(variance) / 100
    nu = params["nu"]
    last, actual = closes[index - 1], closes[index]
    for level in LEVELS:
        q = fit.model.distribution.ppf((1 + level) / 2, [nu])
        lower, upper = last * math.exp(-q * sigma), last * math.exp(q * sigma)
        outside = max(0.0, lower - actual) + max(0.0, actual - upper)
        rows[level]["hits"] += outside == 0
        rows[level]["width"] += (upper - lower) / last * 100
        rows[level]["winkler"] += (upper - lower) + 2 / (1 - level) * outside
    brier += (0.5 - (1.0 if actual > last else 0.0)) ** 2
    count += 1

print(json.dumps({
    "model": "naive + GARCH(1,1)-t", "rows": count,
    **{f"coverage_{int(l * 100)}": rows[l]["hits"] / count for l in LEVELS},
    **{f"width_pct_{int(l * 100)}": rows[l]["width"] / count for l in LEVELS},
    **{f"winkler_{int(l * 100)}": rows[l]["winkler"] / count for l in LEVELS},
    "brier": brier / count,
}))
