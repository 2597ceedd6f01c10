"""schemathesis hooks of scripts/attack-http.sh: the rules of docs/*-openapi.yaml that OpenAPI cannot state.

The documents name them in `x-constraints` (and in prose); a request that breaks one is a 400 the document
promises, so schemathesis must not generate it as a *valid* request. Only positive (schema-valid) cases are
dropped: every negative case is still sent.
"""

import datetime
import math
import re

import schemathesis

GRID_KEYS = ("head", "units", "layers", "activation", "target", "window", "batch_size", "learning_rate", "epochs", "patience", "seed")
# The registry's CANDLECAST_SWEEP_BASELINES as attack-http.sh starts it (the default): one job more per sweep.
CONFIGURED_BASELINES = {"naive-empirical"}


# Shared/ServiceKit/HTTPInput.swift's `instant`: an RFC 3339 date (as `to`, its whole day) or timestamp, 1970 to 2100.
_INSTANT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2})))?$")
_LATEST = 4102444800


def _instant(text, end_of_day=False):
    """Unix seconds of a from/to value, or None when the API refuses it (400)."""
    match = _INSTANT.fullmatch(text) if isinstance(text, str) else None
    if not match:
        return None
    year, month, day, hour, minute, second, _, sign, offset_hours, offset_minutes = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                                   tzinfo=datetime.timezone.utc)
        if int(offset_hours or 0) > 23 or int(offset_minutes or 0) > 59:
            return None
    except ValueError:
        return None
    offset = (int(offset_hours or 0) * 3600 + int(offset_minutes or 0) * 60) * (-1 if sign == "-" else 1)
    seconds = int(moment.timestamp()) - offset + (86399 if end_of_day and hour is None else 0)
    return seconds if 0 <= seconds <= _LATEST else None


def _breaks_range_rule(query) -> bool:
    """docs/predictor-, monitor- and registry-openapi.yaml: from and to are real instants, from <= to."""
    start = _instant(query["from"]) if "from" in query else 0
    end = _instant(query["to"], end_of_day=True) if "to" in query else _LATEST
    return start is None or end is None or start > end


def _breaks_documented_rule(case) -> bool:
    path, method = case.operation.path, case.operation.method.upper()
    if method == "GET" and path in ("/v1/forecasts", "/", "/v1/runs"):
        return _breaks_range_rule(case.query or {})
    if method == "PUT" and path == "/v1/jobs/{job_id}/artifact":
        # docs/registry-openapi.yaml: the body is a model file of the job's run whose SHA-256 is X-Checksum-SHA256;
        # schemathesis cannot write one, so every schema-valid body is a documented 400 (negative cases still go).
        return True
    if method == "POST" and path == "/v1/sweeps":
        # docs/registry-openapi.yaml: at most 256 jobs (the LSTM grid points, none when `model` lists only baselines,
        # plus one per baseline); head gaussian only with target log-return.
        grid = case.body.get("grid") if isinstance(case.body, dict) else None
        if not isinstance(grid, dict):
            return False
        lengths = [len(grid[key]) for key in GRID_KEYS if isinstance(grid.get(key), list) and grid[key]]
        families = grid.get("model") if isinstance(grid.get("model"), list) and grid.get("model") else None
        points = math.prod(lengths) if families is None or "lstm" in families else 0
        baselines = {family for family in families or [] if family != "lstm"} | CONFIGURED_BASELINES
        targets = grid.get("target") if isinstance(grid.get("target"), list) and grid.get("target") else ["log-return"]
        heads = grid.get("head") if isinstance(grid.get("head"), list) else []
        if points > 0 and "gaussian" in heads and any(target != "log-return" for target in targets):
            return True
        return points + len(baselines) > 256
    return False


@schemathesis.hook
def filter_case(context, case):
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    return not (positive and _breaks_documented_rule(case))
