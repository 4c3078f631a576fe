"""Fuzz every operation of the OpenAPI document: whatever a client sends, never a 500.

Schemathesis reads the app's own ``/openapi.json``, so routes added later are fuzzed too.
Requests carry a crew key, so writes run past the role check. The alert stream never ends,
so it is left out here and tested in ``test_alerts.py``.
"""

from collections.abc import Iterator

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.control import SkipTest
from schemathesis.errors import SerializationNotPossible

from geo import alerts
from geo.layers import LAYERS
from service.app import create_app
from service.settings import ServiceSettings

# Examples per operation (half as many invalid ones): the module stays within about a minute
# with a few dozen operations.
EXAMPLES = 40
ENDLESS = ("/alerts/stream",)
LAYER_PARAMETERS = {"layer", "collectionId", "collection_id", "name"}


@pytest.fixture(scope="module")
def fuzz_app(sample_engine) -> Iterator[FastAPI]:
    """The real app with its lifespan running (the state routes rely on is set up there)."""
    with sample_engine.begin() as conn:  # a few alerts, so small ids exist to act on
        manholes = conn.execute(sa.text(
            "SELECT id, ST_AsEWKT(geom) AS ewkt FROM manholes ORDER BY id LIMIT 5")).all()
        for number, manhole in enumerate(manholes):
            alerts.raise_alert(conn, kind="manhole_tilt", severity="high",
                               asset_layer="manholes", asset_id=manhole.id,
                               geom_ewkt=manhole.ewkt, reason=f"cover tilted {11 + number} deg")
    app = create_app(sample_engine, ServiceSettings())
    with TestClient(app):
        yield app


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app).exclude(path=list(ENDLESS))


def fuzz(operation, mode: GenerationMode, examples: int, headers: dict) -> None:
    """Send ``examples`` generated requests to one operation; raise on a server error."""
    # With one mode configured, schemathesis says at the first case that an operation has
    # nothing to negate (SkipTest); with both, it rejects such cases until hypothesis gives up
    # (~460 tries, about 0.5 s of CPU for each of some 20 operations).
    operation.schema.config.generation.update(modes=[mode])

    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case, data) -> None:
        # Half the time, name a real layer, so requests get past "no such layer" to the work.
        for name in LAYER_PARAMETERS & set(case.path_parameters or {}):
            if data.draw(st.booleans()):
                case.path_parameters[name] = data.draw(st.sampled_from(sorted(LAYERS)))
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    run()


@pytest.mark.slow
def test_no_input_makes_a_server_error(api_schema, api_keys):
    # One operation's failure must not hide another's: fuzz them all, then report each.
    headers = {"X-API-Key": api_keys["crew"]}
    failures = {}
    for found in api_schema.get_all_operations():
        operation = found.ok()
        for mode, examples in ((GenerationMode.POSITIVE, EXAMPLES),
                               (GenerationMode.NEGATIVE, EXAMPLES // 2)):
            try:
                fuzz(operation, mode, examples, headers)
            except (SerializationNotPossible, SkipTest, Unsatisfiable):  # nothing of this mode
                continue
            except Exception as error:  # a failure: keep its reproduction
                failures[f"{operation.label} ({mode.value})"] = f"{type(error).__name__}: {error}"
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())


def test_every_mounted_operation_is_fuzzed_but_the_stream(api_schema, fuzz_app):
    paths = {path for path in fuzz_app.openapi()["paths"]}
    fuzzed = {operation.ok().path for operation in api_schema.get_all_operations()}
    assert fuzzed == paths - set(ENDLESS)
    assert {"/alerts", "/alerts/{alert_id}", "/readings"} <= fuzzed
