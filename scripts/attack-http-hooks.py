"""schemathesis hooks of scripts/attack-http.sh: the rules of docs/*-openapi.yaml that OpenAPI cannot state.

The documents name them in `x-constraints` (and in prose); a request that breaks one is a 400 the document
promises, so schemathesis must not generate it as a *valid* request. Only positive (schema-valid) cases are
dropped: every negative case is still sent.
"""

import math

import schemathesis

GRID_KEYS = ("units", "layers", "activation", "target", "window", "batch_size", "learning_rate", "epochs", "patience", "seed")


def _breaks_documented_rule(case) -> bool:
    path, method = case.operation.path, case.operation.method.upper()
    if method == "GET" and path == "/v1/forecasts":
        # docs/predictor-openapi.yaml: from <= to.
        query = case.query or {}
        start, end = query.get("from", 0), query.get("to", 4102444800)
        return isinstance(start, int) and isinstance(end, int) and start > end
    if method == "POST" and path == "/v1/sweeps":
        # docs/registry-openapi.yaml: at most 256 grid points.
        grid = case.body.get("grid") if isinstance(case.body, dict) else None
        if not isinstance(grid, dict):
            return False
        lengths = [len(grid[key]) for key in GRID_KEYS if isinstance(grid.get(key), list) and grid[key]]
        return math.prod(lengths) > 256
    return False


@schemathesis.hook
def filter_case(context, case):
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    return not (positive and _breaks_documented_rule(case))
