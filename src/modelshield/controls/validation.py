"""Input validation gate: shape, feature count, batch size, finiteness and range."""

from __future__ import annotations

import math

from modelshield.controls.query import Query
from modelshield.errors import InvalidInput


class InputValidationGate:
    """Reject rows the model was not built for, with the first problem found.

    Example:
        >>> InputValidationGate(max_batch_rows=256).name
        'validation'
    """

    name = "validation"

    def __init__(self, max_batch_rows: int) -> None:
        self.max_batch_rows = max_batch_rows

    async def check(self, query: Query) -> None:
        spec = query.spec.input
        rows = query.rows
        limit = min(self.max_batch_rows, query.plan.max_batch_rows or self.max_batch_rows)
        problem: str | None = None
        if rows.ndim != 2:
            problem = f"{spec.name}: expected shape [N, {spec.features}], got {list(rows.shape)}"
        elif rows.shape[0] == 0:
            problem = f"{spec.name}: empty batch"
        elif rows.shape[1] != spec.features:
            problem = f"{spec.name}: expected {spec.features} features per row, got {rows.shape[1]}"
        elif rows.shape[0] > limit:
            problem = f"{spec.name}: batch of {rows.shape[0]} rows exceeds the maximum of {limit}"
        else:
            # two reductions answer all three questions: NaN propagates through min and
            # max, and an infinity is the minimum or the maximum
            lowest, highest = float(rows.min()), float(rows.max())
            if not (math.isfinite(lowest) and math.isfinite(highest)):
                problem = f"{spec.name}: NaN or infinite values are not allowed"
            elif spec.min is not None and lowest < spec.min:
                problem = f"{spec.name}: values must be >= {spec.min:g}"
            elif spec.max is not None and highest > spec.max:
                problem = f"{spec.name}: values must be <= {spec.max:g}"
        if problem is None and query.requested_outputs is not None:
            allowed: list[str] = list(query.plan.outputs)
            if "probabilities" in allowed:
                allowed.append("classes")  # names the columns of a top-k answer
            refused = [o for o in query.requested_outputs if o not in allowed]
            if refused:
                problem = f"output {refused[0]!r} is not available; available: {', '.join(allowed)}"
        if problem is not None:
            query.controls.append(self.name)
            raise InvalidInput(problem)
