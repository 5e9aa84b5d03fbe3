"""The feature sketch: fixed, distance-preserving, and what events carry instead of inputs."""

from __future__ import annotations

import numpy as np

from helpers import GatewayClient, bearer, v2_body
from modelshield.monitor.sketch import SKETCH_DIMS, project, sketch_rows


def test_sketch_is_fixed_and_roughly_preserves_distances() -> None:
    from modelshield.models.demo import digits_split

    rows = digits_split()[0][:200]
    first, again = sketch_rows(rows), sketch_rows(rows.copy())
    assert first == again and len(first[0]) == SKETCH_DIMS
    original = np.linalg.norm(rows[:100] - rows[100:], axis=1)
    projected = np.linalg.norm(project(rows[:100]) - project(rows[100:]), axis=1)
    ratio = projected / original
    assert 0.7 < float(np.median(ratio)) < 1.3


async def test_answered_events_carry_the_sketch_not_the_input(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    account_id, key = await gw.account()
    response = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:3]), headers=bearer(key)
    )
    assert response.status_code == 200
    await gw.gateway.sink.flush()
    (event,) = await gw.gateway.store.recent_events(account_id, 1)
    assert event.sketch == sketch_rows(digits_rows[:3].astype(np.float32))
    assert "data" not in event.to_json()
