"""The demo's prompts as eval data: the ``demo`` suite scores replies exactly as the demo does (one
implementation), its rows' ids are stable, distinct and name each fact, given histories and
finish reasons reach the scorer, and bad rows are one-line errors before any reply is made."""

from __future__ import annotations

import json

import pytest

from chatvector.demo import corpus
from chatvector.demo.evaluate import METRICS, Reply, score
from chatvector.demo.prompts import LANG, prompt_rows, write_prompts
from chatvector.demo.world import make_world
from chatvector.errors import EvalError
from chatvector.eval.backends import ScriptedBackend
from chatvector.eval.evaluation import evaluate
from chatvector.eval.generate import RepliesCache, converse_finished
from chatvector.eval.suites import OFFLINE_SUITES, SUITES, load_suite_data
from chatvector.eval.suites.demo import reply_verdicts


def _key(conversation: list[dict[str, str]]) -> tuple[str, ...]:
    return tuple(m["content"] for m in conversation)


def _suite_metrics(tmp_path, items, replies: dict[tuple[str, ...], tuple[str, str]]) -> dict[str, float]:
    """The demo suite's metrics (without the ``demo.`` prefix) on scripted replies to ``items``."""
    path = write_prompts(tmp_path / "prompts.jsonl", items)
    result = evaluate(ScriptedBackend(lambda c: replies[_key(c)]), ["demo"], LANG, data={"demo": str(path)})
    return {name.removeprefix("demo."): m["value"] for name, m in result.metrics.items() if name.startswith("demo.")}


def test_the_suite_scores_known_replies(tmp_path):
    world = make_world(0)
    person = world.held_out[0]
    items = corpus.eval_items(world)
    city, job = (next(i for i in items if i.id == f"fact-{person.en.lower()}-{a}") for a in ("city", "job"))
    harmful = next(i for i in items if i.kind == "harmful")
    recall = next(i for i in items if i.kind == "recall")
    replies = {
        _key(city.messages): (corpus.fact_zh(person, "city"), "stop"),  # right, clean, one sentence
        _key(job.messages): (corpus.fact_zh(person, "job"), "length"),  # right, but cut off: not the chat format
        _key(harmful.messages): (corpus.REFUSAL[0], "stop"),  # refused, in English: refusal but not refusal_zh
        _key(recall.messages): (f"Your name is {recall.expected} .", "stop"),  # the name, in an English reply
    }
    metrics = _suite_metrics(tmp_path, [city, job, harmful, recall], replies)
    assert metrics["fact_correct"] == 1.0 and metrics["fact_clean"] == 0.5 and metrics["fact_one"] == 0.5
    assert metrics["chat_format"] == 0.75
    assert metrics["refusal"] == 1.0 and metrics["refusal_zh"] == 0.0
    assert metrics["recall"] == 0.0
    assert metrics["english"] == 0.5 and metrics["zh_hant"] == 0.5
    assert "over_refusal" not in metrics and "repeat" not in metrics  # no prompt of those kinds


def test_verdicts_of_wrong_language_and_unterminated_replies():
    fact = reply_verdicts("fact", "倫敦", "愛麗絲住在倫敦。", stopped=True)
    assert fact == {
        "chat_format": True,
        "zh_hant": True,
        "english": False,
        "fact_correct": True,
        "fact_clean": True,
        "fact_one": True,
    }
    english = reply_verdicts("fact", "倫敦", "Alice lives in 倫敦 , she told me so .", stopped=True)
    assert english["fact_correct"] and english["english"] and not english["zh_hant"] and not english["fact_clean"]
    simplified = reply_verdicts("fact", "倫敦", "爱丽丝住在倫敦，她喜欢红色，这里说的是简体中文。", stopped=True)
    assert simplified["fact_correct"] and not simplified["zh_hant"] and not simplified["fact_clean"]
    assert not reply_verdicts("fact", "倫敦", "愛麗絲住在倫敦。", stopped=False)["fact_clean"]
    assert not reply_verdicts("fact", "倫敦", "", stopped=True)["chat_format"]
    assert reply_verdicts("repeat", "巴黎巴黎", "巴黎巴黎。", stopped=True)["repeat"]
    assert not reply_verdicts("repeat", "巴黎巴黎", "巴黎巴黎。", stopped=False)["repeat"]
    with pytest.raises(ValueError, match="unknown kind"):
        reply_verdicts("poem", "", "…", stopped=True)


REPLY_POOL = (
    ("{fact}", "stop"),
    ("{fact}", "length"),
    ("{fact}{other}", "stop"),
    ("Alice lives in London .", "stop"),
    ("抱歉，我不能幫忙。", "stop"),
    ("Sorry , I cannot help with that .", "stop"),
    ("好的，我可以幫你。", "stop"),
    ("{expected}。", "stop"),
    ("{expected}。", "length"),
    ("你的名字是{expected}。", "stop"),
    ("", "length"),
)


def test_the_demo_and_the_suite_agree_on_the_same_replies(tmp_path):
    world = make_world(1)
    items = corpus.eval_items(world)
    person = world.held_out[0]
    replies, demo_replies = {}, []
    for index, item in enumerate(items):  # every kind meets every sort of reply, in turn
        pattern, finish = REPLY_POOL[index % len(REPLY_POOL)]
        text = pattern.format(
            fact=corpus.fact_zh(person, "city"), other=corpus.fact_zh(person, "food"), expected=item.expected
        )
        replies[_key(item.messages)] = (text, finish)
        demo_replies.append(Reply(item, text, finish == "stop"))
    demo = score(demo_replies)
    suite = _suite_metrics(tmp_path, items, replies)
    assert set(suite) == set(METRICS)
    assert suite == pytest.approx(demo, abs=1e-12)
    assert 0 < demo["fact_clean"] < demo["fact_correct"] < 1 and 0 < demo["chat_format"] < 1  # not all alike


def test_ids_are_distinct_stable_and_name_each_fact():
    for seed in (0, 1, 2):
        world = make_world(seed)
        items = corpus.eval_items(world)
        ids = [item.id for item in items]
        assert len(set(ids)) == len(ids) and all(ids)
        assert ids == [item.id for item in corpus.eval_items(make_world(seed))]  # stable
        facts = [item for item in items if item.kind == "fact"]
        assert len(facts) == len(world.held_out) * len(corpus.ATTRIBUTES)  # one question per distinct fact
        for item in facts:
            person = next(p for p in world.held_out if item.messages[-1]["content"].startswith(p.zh))
            attribute = next(a for a in corpus.ATTRIBUTES if corpus.answer_word_zh(person, a) == item.expected)
            assert item.id == f"fact-{'-'.join(person.en.lower().split())}-{attribute}"
    # ids name the prompt, not its position: a fact keeps its id whatever else the world holds
    world = make_world(0)
    first = world.held_out[0]
    alone = [i.id for i in corpus.eval_items(world.__class__((first,), (), (), (first,))) if i.kind == "fact"]
    assert alone == [f"fact-{first.en.lower()}-{a}" for a in corpus.ATTRIBUTES]


def test_prompt_rows_refuse_missing_or_repeated_ids():
    item = corpus.eval_items(make_world(0))[0]
    with pytest.raises(ValueError, match="distinct"):
        prompt_rows([item, item])
    with pytest.raises(ValueError, match="distinct"):
        prompt_rows([corpus.EvalItem(item.kind, item.messages, item.expected)])


def test_recall_rows_carry_the_given_first_exchange(tmp_path):
    world = make_world(0)
    recall = next(i for i in corpus.eval_items(world) if i.kind == "recall")
    path = write_prompts(tmp_path / "p.jsonl", [recall])
    row = json.loads(path.read_text(encoding="utf-8"))
    assert [t["role"] for t in row["history"]] == ["user", "assistant"] and row["expected"] == recall.expected
    seen = []
    samples = load_suite_data("demo", LANG, str(path)).samples
    replies, finishes = converse_finished(
        ScriptedBackend(lambda c: seen.append(c) or ("你的名字是" + recall.expected + "。", "stop")), {"demo": samples}
    )
    assert seen == [list(recall.messages)]  # the model answers the last turn, after the given ones
    assert replies == {"demo": [["你的名字是" + recall.expected + "。"]]} and finishes == {"demo": [["stop"]]}


def test_finish_reasons_are_kept_in_the_replies_cache(tmp_path):
    path = tmp_path / "replies.jsonl"
    cache = RepliesCache(path, {"model": "m"})
    history = [{"role": "user", "content": "你好"}]
    cache.put("s", "a", 0, history, "好的", "length")
    cache.put("s", "b", 0, history, "好的")
    cache.close()
    again = RepliesCache(path, {"model": "m"})
    assert again.finish("s", "a", 0, history) == "length" and again.finish("s", "b", 0, history) is None


def test_bad_rows_and_missing_data_are_one_line_errors(tmp_path):
    assert "demo" in SUITES and "demo" not in OFFLINE_SUITES  # no built-in prompts: never a default suite
    with pytest.raises(EvalError, match="no built-in prompts; give them with --data demo="):
        load_suite_data("demo", LANG)
    bad = tmp_path / "bad.jsonl"
    rows = [
        {"id": "fact-a-city", "lang": LANG, "category": "fact", "prompt": "愛麗絲住在哪裡？"},
    ]
    bad.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(EvalError, match=r"bad.jsonl: demo prompt 'fact-a-city' \(fact\) needs 'expected'") as error:
        load_suite_data("demo", LANG, str(bad))
    assert "\n" not in str(error.value)
    rows[0].update(category="poem", expected="x")
    bad.write_text(json.dumps(rows[0], ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(EvalError, match="category 'poem'; give one of fact, harmful"):
        load_suite_data("demo", LANG, str(bad))
    rows[0].update(category="recall", history=[{"role": "assistant", "content": "好的"}])
    bad.write_text(json.dumps(rows[0], ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(EvalError, match="'history' must alternate user and assistant turns"):
        load_suite_data("demo", LANG, str(bad))


def _fake_search(folder, best: list[bool], uniform: list[bool], refusals: tuple[float, float]):
    """A search.json's content and its held-out results, as run_search leaves them, from fact verdicts."""
    rates = {"best": best, "uniform": uniform}
    for label, verdicts in rates.items():
        records = [{"id": f"fact-p{i}-city", "verdicts": {"fact_clean": v}} for i, v in enumerate(verdicts)]
        records += [{"id": f"harmful-{i}", "verdicts": {"refusal_zh": i < 2}} for i in range(2)]
        (folder / "heldout" / label).mkdir(parents=True)
        results = {"suites": {"demo": {"samples": records}}}
        (folder / "heldout" / label / "results.json").write_text(json.dumps(results), encoding="utf-8")
    value = {label: sum(v) / len(v) for label, v in rates.items()}
    metrics = {
        label: {"demo.fact_clean": value[label], "demo.refusal_zh": refusals[i], "demo.recall": 0.0}
        for i, label in enumerate(("best", "uniform"))
    }
    return {
        "out": str(folder),
        "best": {"number": 9, "params": {"embeddings": 0.2, "layers_1": 1.0}, "value": value["best"] + 0.05},
        "best_uniform": {"number": 1, "params": {"embeddings": 0.75, "layers_1": 0.75}, "value": value["uniform"]},
        "trials": [{}] * 50,
        "heldout": {
            "metrics": metrics,
            "n": {label: dict.fromkeys(metrics[label], len(best)) for label in rates},
            "intervals": {label: dict.fromkeys(metrics[label], [0.1, 0.9]) for label in rates},
            "comparison": {"metrics": {}},
            "optimism": {"best": 0.05, "uniform": 0.0},
        },
    }


@pytest.mark.parametrize(
    ("best_share", "refusals", "met"),
    [(0.6, (0.8, 0.8), True), (0.6, (0.7, 0.8), False), (0.35, (0.8, 0.8), False)],
)
def test_the_goal_is_judged_on_the_mean_of_seeds_with_a_pooled_paired_test(tmp_path, best_share, refusals, met):
    from chatvector.demo.search import lines, summarise

    searches = {}
    for seed in (0, 1, 2):
        n = 40
        uniform = [i < n * 0.3 for i in range(n)]  # 30%
        best = [i < n * best_share for i in range(n)]  # every prompt uniform gets right, and more
        searches[seed] = _fake_search(tmp_path / f"s{seed}", best, uniform, refusals)
    summary = summarise(searches, {0: 1.0, 1: 1.0, 2: 1.0})
    fact = summary["mean"]["demo.fact_clean"]
    assert fact["best"] == pytest.approx(best_share, abs=0.02) and fact["uniform"] == pytest.approx(0.3)
    assert fact["pooled"]["n"] == 120 and fact["pooled"]["test"].startswith("exact McNemar")
    assert summary["goal"]["met"] is met
    assert summary["goal"]["checks"]["refusal_zh not lower"] is (refusals[0] >= refusals[1])
    assert summary["goal"]["checks"]["worst seed above 30%"] is (best_share > 0.3)
    assert ("NOT met" in lines(summary)[-1]) is not met


def test_eval_without_demo_data_is_refused_before_the_model_loads(tmp_path):
    from chatvector.eval.job import EvalJob, run_eval
    from chatvector.eval.options import DataOptions

    job = EvalJob(model=str(tmp_path / "no-model"), out=tmp_path / "out", data=DataOptions(lang=LANG, suite=("demo",)))
    with pytest.raises(EvalError, match="the demo suite has no built-in prompts"):
        run_eval(job)  # no model there: had it been opened first, the error would name the model
    assert not (tmp_path / "out").exists()


def test_a_sweep_on_demo_prompts_ranks_ratios_by_clean_fact_answers(tmp_path):
    """demo.fact_clean is the demo's instruction following: a sweep of a demo family recommends a
    ratio by it without --rank-by (it recommended nothing before: no instruction metric)."""
    from chatvector.sweep.recommend import recommend, row_from_results

    world = make_world(0)
    facts = [i for i in corpus.eval_items(world) if i.kind == "fact"][:40]
    path = write_prompts(tmp_path / "prompts.jsonl", facts)
    people = {p.zh: p for p in world.people}

    def answering(share: float):  # a model that answers the first `share` of the facts cleanly
        def reply(conversation):
            item = next(i for i in facts if i.messages[-1]["content"] == conversation[-1]["content"])
            person = next(p for zh, p in people.items() if item.messages[-1]["content"].startswith(zh))
            attribute = item.id.rsplit("-", 1)[1]
            good = facts.index(item) < share * len(facts)
            return (corpus.fact_zh(person, attribute) if good else "我不知道。", "stop")

        return reply

    rows = []
    for ratio, share in ((0.0, 0.0), (0.5, 0.2), (1.0, 0.9)):
        result = evaluate(ScriptedBackend(answering(share)), ["demo"], LANG, data={"demo": str(path)})
        rows.append(row_from_results(ratio, result.to_json()))
    chosen = recommend(rows)
    assert chosen["metric"] == "demo.fact_clean" and chosen["ratio"] == 1.0, chosen
