import sys
import types
from decimal import Decimal

import pytest

from llmcost import Estimate, count_tokens, estimate_cost


def test_heuristic_counts_ascii_by_ratio_and_other_characters_one_each():
    assert count_tokens("x" * 400, model="claude-3-5-sonnet-latest") == 115  # 400 / 3.5, rounded up
    assert count_tokens("日本語のテキスト", model="claude-3-5-sonnet-latest") == 8
    assert count_tokens("", model="claude-3-5-sonnet-latest") == 0


def test_heuristic_counts_mixed_text_by_its_ascii_and_other_characters():
    # 10 ASCII characters at 3.5 a token (3 tokens), plus 10 accented letters and 2 emoji at one token each.
    assert count_tokens("aé" * 10 + "🙂🙂", model="claude-3-5-sonnet-latest") == 3 + 10 + 2


def test_without_tiktoken_the_import_is_tried_once_per_model(monkeypatch):
    # A failed import is not cached by Python: tried on every count, it searched sys.path each time (~100 us).
    import builtins

    real_import = builtins.__import__
    tried = []

    def no_tiktoken(name, *args, **kwargs):
        if name == "tiktoken":
            tried.append(name)
            raise ImportError("No module named 'tiktoken'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tiktoken)
    for _ in range(3):
        assert count_tokens([{"role": "user", "content": "x" * 40}], model="gpt-4o") == 3 + 3 + 10
    assert tried == ["tiktoken"]


def test_messages_add_per_message_overhead_and_read_parts():
    messages = [
        {"role": "system", "content": "x" * 35},
        {"role": "user", "content": [{"type": "text", "text": "x" * 35}, {"type": "image_url", "image_url": {}}]},
    ]
    assert count_tokens(messages, model="claude-3-5-haiku-latest") == 3 + (3 + 10) + (3 + 10)


@pytest.mark.parametrize("bad", [5, None, [5], [{"role": "user", "content": 5}]])
def test_bad_input_is_a_type_error_naming_the_value(bad):
    with pytest.raises(TypeError):
        count_tokens(bad)


@pytest.mark.parametrize("model", [None, "gpt-4o"])  # the heuristic and the tokenizer's path
def test_a_dict_that_is_not_a_chat_message_is_refused_naming_it(model):
    messages = [{"role": "user", "content": "Hi"}, {"foo": 1}]
    with pytest.raises(TypeError, match=r"messages\[1\] must be a dict with 'role' and 'content', got \{'foo': 1\}"):
        count_tokens(messages, model=model)
    # A message of a role whose content is missing or None (an assistant's tool calls) is counted, as before.
    assert count_tokens([{"role": "assistant", "tool_calls": []}], model=model) == count_tokens(
        [{"role": "assistant", "content": None}], model=model
    )


@pytest.mark.parametrize("model", [[], 1, ("gpt-4o",)])
def test_a_model_that_is_not_an_id_is_a_type_error_naming_it(model):
    with pytest.raises(TypeError, match=r"model must be a model id \(str\) or None, got"):
        count_tokens("", model=model)


def test_exact_when_an_offline_tokenizer_loads(monkeypatch):
    class Encoding:
        def encode(self, text, disallowed_special=()):
            return text.split()

    fake = types.SimpleNamespace(encoding_name_for_model=lambda m: "o200k_base", get_encoding=lambda n: Encoding())
    monkeypatch.setitem(sys.modules, "tiktoken", fake)
    assert count_tokens("one two three four", model="gpt-4o") == 4


def test_falls_back_when_the_tokenizer_cannot_load(monkeypatch):
    def no_network(name):
        raise OSError("no network")

    fake = types.SimpleNamespace(encoding_name_for_model=lambda m: "o200k_base", get_encoding=no_network)
    monkeypatch.setitem(sys.modules, "tiktoken", fake)
    assert count_tokens("x" * 40, model="gpt-4o") == 10  # the heuristic, 4 characters per token


def test_estimate_cost_prices_input_and_output():
    est = estimate_cost("gpt-4o", "x" * 4000, output_tokens=100)
    assert isinstance(est, Estimate)
    assert est.input_tokens == count_tokens("x" * 4000, model="gpt-4o")
    assert est.output_tokens == 100
    expected = (Decimal(est.input_tokens) * Decimal("2.5") + Decimal(100) * Decimal(10)) / Decimal(1_000_000)
    assert est.amount == expected
    with pytest.raises(ValueError, match="output_tokens"):
        estimate_cost("gpt-4o", "x", output_tokens=-1)
