"""services/compare/schema.py: the results of a real comparison validate; broken ones are named precisely."""

from __future__ import annotations

import copy

import orjson
import pytest

from services.compare.schema import RESULTS_SCHEMA, validate
from shared.errors import ParameterError


def test_results_validate_and_survive_a_json_round_trip(scale_results):
    validate(scale_results)
    validate(orjson.loads(orjson.dumps(scale_results)))


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("pipelines", "wav2vec", "timing", "p95_ms"), "fast", "$.pipelines.wav2vec.timing.p95_ms: expected number"),
        (("pipelines", "traditional", "vocabulary", "used_fraction"), 1.5, "above the maximum"),
        (("recommendations", 0, "choice"), "both", "is not one of"),
        (("probes", "pitch_class", "traditional", "accuracy"), float("nan"), "not finite"),
        (("input", "events"), True, "expected integer"),
    ],
)
def test_broken_results_are_rejected_with_their_path(scale_results, path, value, message):
    broken = copy.deepcopy(scale_results)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ParameterError, match=message.replace("$", r"\$").replace(".", r"\.").replace("[", r"\[")):
        validate(broken)


def test_missing_required_section_is_rejected(scale_results):
    broken = copy.deepcopy(scale_results)
    del broken["probes"]["consonance"]
    with pytest.raises(ParameterError, match="missing required key 'consonance'"):
        validate(broken)
    assert set(RESULTS_SCHEMA["required"]) <= set(scale_results)
