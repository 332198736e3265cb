"""lm-eval task files, endpoint arguments, perplexity windows and the benchmark report with deltas."""

from __future__ import annotations

import math

import pytest

from cogumi.config_base import ModelConfig
from cogumi.errors import CogumiError
from cogumi.evaluate.config import LOCAL_TASKS, HarnessConfig, PerplexityConfig
from cogumi.evaluate.harness import _endpoint_args, load_tasks, primary_metric, task_manager
from cogumi.evaluate.report import deltas, flat_metrics, render_markdown


@pytest.fixture(scope="module")
def tm():
    return task_manager(HarnessConfig())


def test_bundled_tasks_load_offline_with_their_shapes(tm):
    tasks = load_tasks(tm, ["cogumi_local"])
    assert set(tasks) == set(LOCAL_TASKS)
    types = {n: t.config.output_type for n, t in tasks.items()}
    assert types["cogumi_mmlu"] == "multiple_choice" and types["cogumi_gsm8k"] == "generate_until"
    assert len(tasks["cogumi_mmlu"].test_docs()) == 8 and len(tasks["cogumi_gsm8k"].test_docs()) == 6
    premise = load_tasks(tm, ["cogumi_simple_math"])["cogumi_simple_math"]
    assert len(premise.test_docs()) == 60  # only the held-out split of the simple-math set


def test_unknown_tasks_and_folders_are_clear_errors(tm, tmp_path):
    with pytest.raises(CogumiError, match="does not know the task"):
        load_tasks(tm, ["cogumi_mmlu", "definitely_not_a_task"])
    with pytest.raises(CogumiError, match="does not exist"):
        task_manager(HarnessConfig(include_paths=[str(tmp_path / "missing")]))


def test_endpoint_arguments(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    model = ModelConfig(backend="openai", base_url="http://h:1/v1/", model="m", api_key_env="MY_KEY")
    chat = _endpoint_args(model, HarnessConfig(), chat=True)
    assert chat["base_url"] == "http://h:1/v1/chat/completions" and chat["tokenizer_backend"] is None
    assert chat["header"] == {"Authorization": "Bearer sk-test"}
    with pytest.raises(CogumiError, match="tokenizer"):
        _endpoint_args(model, HarnessConfig(), chat=False)
    done = _endpoint_args(model, HarnessConfig(tokenizer="gpt2"), chat=False)
    assert done["base_url"].endswith("/v1/completions") and done["tokenizer"] == "gpt2"


def test_sliding_window_scores_every_token_once(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from cogumi.evaluate.perplexity import sliding_window_nll

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    ids = torch.randint(0, 2000, (1, 90), generator=torch.Generator().manual_seed(0))
    nll, n = sliding_window_nll(model, ids, max_length=128, stride=64)
    with torch.inference_mode():
        loss = float(model(ids, labels=ids).loss)
    assert n == 89 and nll / n == pytest.approx(loss, rel=1e-4)  # one window == the model's own loss
    nll2, n2 = sliding_window_nll(model, ids, max_length=32, stride=16)
    assert n2 == 89 and abs(nll2 / n2 - loss) < 0.2  # less context, same tokens


def test_perplexity_runs_on_a_local_model_and_skips_endpoints(tiny_llama_dir):
    from cogumi.evaluate.perplexity import perplexity

    res = perplexity(ModelConfig(backend="transformers", model=str(tiny_llama_dir)),
                     PerplexityConfig(max_length=64, stride=32, max_tokens=120))
    assert res["tokens"] == 119 and math.isclose(res["perplexity"], math.exp(res["nll_per_token"]))
    assert res["perplexity"] > 1000  # random weights: close to the vocabulary size
    assert "skipped" in perplexity(ModelConfig(backend="openai", base_url="http://x/v1"), PerplexityConfig())


def _results(mmlu, ppl, stamp):
    return {"timestamp": stamp, "model": {"model": "m", "backend": "transformers"},
            "harness": {"tasks": {"cogumi_mmlu": {"metrics": {"acc,none": mmlu}, "n": 8}},
                        "skipped": {"cogumi_hellaswag": "loglikelihood task"}},
            "code": {"mbpp": {"pass@1": 0.25, "scored": 8, "errors": 0}},
            "perplexity": {"perplexity": ppl, "tokens": 500}, "method": {"harness": "lm-eval HFLM"}}


def test_report_has_every_number_and_deltas_against_the_baseline():
    base, now = _results(0.25, 20.0, "t0"), _results(0.5, 18.5, "t1")
    assert set(flat_metrics(now)) == {"cogumi_mmlu acc,none", "mbpp pass@1", "perplexity"}
    d = deltas(now, base)
    assert d["cogumi_mmlu acc,none"] == pytest.approx(0.25) and d["perplexity"] == pytest.approx(-1.5)
    md = render_markdown(now, base, "saved baseline")
    assert "| cogumi_mmlu acc,none | 50.0% | 8 | 25.0% | +25.0 pts |" in md
    assert "| perplexity | 18.50 | 500 | 20.00 | -1.50 |" in md
    assert "cogumi_hellaswag: loglikelihood task" in md
    assert primary_metric(now["harness"]["tasks"]["cogumi_mmlu"]) == ("acc,none", 0.5)
    assert "baseline" not in render_markdown(now).split("| metric")[0].lower()


def test_a_peft_adapter_is_applied_for_perplexity_and_merged_for_lm_eval(tiny_llama_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from cogumi.evaluate.harness import _hf_model
    from cogumi.evaluate.perplexity import perplexity

    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    pcfg = PerplexityConfig(max_length=64, stride=32, max_tokens=80)
    base = perplexity(ModelConfig(backend="transformers", model=str(tiny_llama_dir)), pcfg)
    tuned = perplexity(ModelConfig(backend="transformers", model=str(tiny_llama_dir),
                                   adapter=str(tmp_path / "adapter")), pcfg)
    assert tuned["method"].endswith("+ adapter") and tuned["perplexity"] != pytest.approx(base["perplexity"])
    lm, how = _hf_model(ModelConfig(backend="transformers", model=str(tiny_llama_dir),
                                    adapter=str(tmp_path / "adapter")), HarnessConfig())
    assert "adapter merged" in how and not hasattr(lm.model, "peft_config")
