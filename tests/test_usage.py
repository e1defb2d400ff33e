import pickle

import attrs
import pytest

from llmcost import Usage


def test_usage_adds_and_totals():
    a = Usage(input_tokens=100, output_tokens=20, cache_read_tokens=50, reasoning_tokens=5)
    b = Usage(input_tokens=10, output_tokens=2, cache_write_tokens=3)
    total = a + b
    assert total == Usage(110, 22, 50, 3, 5)
    assert total.total_tokens == 132
    assert pickle.loads(pickle.dumps(total)) == total


def test_usage_is_frozen():
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Usage().input_tokens = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input_tokens": -1}, "input_tokens"),
        ({"output_tokens": -5}, "output_tokens"),
        ({"input_tokens": 10, "cache_read_tokens": 8, "cache_write_tokens": 3}, "cache_read_tokens"),
        ({"output_tokens": 1, "reasoning_tokens": 2}, "reasoning_tokens"),
    ],
)
def test_usage_rejects_impossible_counts(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Usage(**kwargs)


@pytest.mark.parametrize("value", ["10", 1.5, None, True])
def test_usage_rejects_non_integers(value):
    with pytest.raises(TypeError, match="input_tokens"):
        Usage(input_tokens=value)


def test_usage_accepts_whole_floats_from_json():
    assert Usage(input_tokens=12.0).input_tokens == 12
