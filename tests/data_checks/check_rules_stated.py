"""Checks that every verifiable rule of the built-in data is stated in its prompt (not a pytest module).

Run:  .venv/bin/python tests/data_checks/check_rules_stated.py [LANG ...]

A rule a prompt never asks for grades a correct answer as wrong (a required word nobody asked
for, an unstated word limit). For every rule of ``verifiable`` and ``multiturn`` samples, the
prompt (for multi-turn samples: any user turn) must state it:

- ``include`` / ``exclude`` / ``keyword_count`` / ``starts_with`` / ``ends_with``: the word itself
  appears in the prompt (compared after NFKC, case folding and katakana→hiragana folding);
- a count or limit (``max_words``, ``min_chars``, ``bullets``, ``numbered``, ``paragraphs``,
  ``max_sentences``, ``keyword_count``'s ``min``/``max``, ``highlights`` above 1): the number
  appears, in digits or in words of the prompt's language (30, thirty, 三十, 서른, 삼십);
- ``json`` keys: each key appears.

``language`` (the prompt's own language), ``lowercase`` / ``uppercase`` (checked by the schema
checkers) and zero counts ("no list") are not checked here. Standard library only, so that the
data is checked against docs/eval-data.md, not against chatvector's code.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "src" / "chatvector" / "eval" / "data"
LANGUAGES = ("en", "zh-Hant", "zh-Hans", "ko", "ja")
SUITES = ("verifiable", "multiturn")

EN_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
EN_UNITS += "seventeen eighteen nineteen"
EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
CJK_DIGITS = "零一二三四五六七八九"
KO_SINO = ["", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"]
# Native Korean numbers: each unit with its counter form (한 개, 두 문장, 세 줄).
KO_NATIVE_UNITS = [(), ("하나", "한"), ("둘", "두"), ("셋", "세", "석"), ("넷", "네"), ("다섯",), ("여섯",), ("일곱",),
                   ("여덟",), ("아홉",)]  # fmt: skip
KO_NATIVE_TENS = ["", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔"]
JA_NATIVE = {1: ("ひとつ", "一つ"), 2: ("ふたつ", "二つ"), 3: ("みっつ", "三つ"), 4: ("よっつ", "四つ"),
             5: ("いつつ", "五つ"), 6: ("むっつ", "六つ"), 7: ("ななつ", "七つ"), 8: ("やっつ", "八つ"),
             9: ("ここのつ", "九つ")}  # fmt: skip
_KATAKANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}


def fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().translate(_KATAKANA)


def cjk_number(n: int) -> set[str]:
    """三十, 一百五十, 兩, 二十五 …"""
    if n < 10:
        return {CJK_DIGITS[n]} | ({"兩", "两"} if n == 2 else set())
    forms = set()
    hundreds, rest = divmod(n, 100)
    tens, units = divmod(rest, 10)
    text = ""
    if hundreds:
        text += ("" if hundreds == 1 else CJK_DIGITS[hundreds]) + "百"
    if tens:
        text += ("" if tens == 1 and not hundreds else CJK_DIGITS[tens]) + "十"
    elif hundreds and units:
        text += "零"
    if units:
        text += CJK_DIGITS[units]
    forms.add(text)
    if hundreds == 1:
        forms.add("一" + text)
    if n < 20 and not hundreds:
        forms.add("一" + text)
    return forms


def ko_number(n: int) -> set[str]:
    forms: set[str] = set()
    hundreds, rest = divmod(n, 100)
    tens, units = divmod(rest, 10)
    sino = ("" if hundreds in (0, 1) else KO_SINO[hundreds]) + ("백" if hundreds else "")
    sino += ("" if tens in (0, 1) else KO_SINO[tens]) + ("십" if tens else "") + KO_SINO[units]
    forms.add(sino)
    if not hundreds:
        for unit in KO_NATIVE_UNITS[units] or ("",):
            forms.add(KO_NATIVE_TENS[tens] + unit)
    return {f for f in forms if f}


def en_number(n: int) -> set[str]:
    units = EN_UNITS.split()
    if n < 20:
        extra = {1: {"single", "a single", "once"}, 2: {"a pair", "a couple", "twice"}, 3: {"thrice"}}.get(n, set())
        return {units[n]} | extra
    if n < 100:
        tens, unit = divmod(n, 10)
        return {
            EN_TENS[tens] + ("" if not unit else f"-{units[unit]}"),
            EN_TENS[tens] + ("" if not unit else f" {units[unit]}"),
        }
    if n % 100 == 0 and n < 1000:
        return {f"{units[n // 100]} hundred", "a hundred" if n == 100 else ""} - {""}
    return set()


def number_forms(n: int, lang: str) -> set[str]:
    forms = {str(n), str(n).translate(str.maketrans("0123456789", "０１２３４５６７８９"))}
    if lang == "en":
        forms |= en_number(n)
    elif lang == "ko":
        forms |= ko_number(n) | cjk_number(n)
    else:
        forms |= cjk_number(n)
        if lang == "ja":
            forms |= set(JA_NATIVE.get(n, ()))
    return {fold(f) for f in forms}


def states_number(prompt: str, n: int, lang: str) -> bool:
    text = fold(prompt)
    for form in number_forms(n, lang):
        start = text.find(form)
        while start != -1:
            before = text[start - 1 : start]
            after = text[start + len(form) : start + len(form) + 1]
            # A digit form must not be part of a longer number (3 in 30), a word not part of a longer word.
            if form.isdigit():
                if not (before.isdigit() or after.isdigit()):
                    return True
            elif form[0].isascii():
                if not (before.isalpha() or after.isalpha()):
                    return True
            elif not (
                before and before in "零一二三四五六七八九十百兩两" or after and after in "零一二三四五六七八九十百"
            ):
                return True
            start = text.find(form, start + 1)
    return False


# A single unit stated without the digit: "a short paragraph", 한 문장, 一句, 1文.
ONE = {
    "en": (
        "a sentence",
        "a paragraph",
        "a short paragraph",
        "a single",
        "a word",
        "one word",
        "one sentence",
        "a complete sentence",
        "opening paragraph",
    ),
    "zh-Hant": ("一句", "一段", "一個"),
    "zh-Hans": ("一句", "一段", "一个"),
    "ko": ("한 문장", "한 단락", "한 문단", "한 줄", "한 단어", "하나"),
    "ja": ("一文", "1文", "一言", "一段落", "ひとこと", "一つ"),
}
# Brevity or length stated in words: an upper limit (max_*) follows from them, a lower one (min_*)
# from the second list; the limit itself must be lenient, which the ideal replies check.
BRIEF = {
    "en": (
        "short",
        "brief",
        "briefly",
        "concise",
        "haiku",
        "slogan",
        "name only",
        "one word",
        "a few",
        "tweet",
        "title",
        "name",
        "one-liner",
        "headline",
        "two-line",
        "digit only",
    ),
    "zh-Hant": (
        "簡短",
        "簡單",
        "一句",
        "標語",
        "只回答",
        "只寫",
        "名字",
        "簡要",
        "精簡",
        "口號",
        "只輸出",
        "不超過",
        "不要寫其他",
    ),
    "zh-Hans": (
        "简短",
        "简单",
        "一句",
        "标语",
        "只回答",
        "只写",
        "名字",
        "简要",
        "精简",
        "口号",
        "只输出",
        "不超过",
        "不要写其他",
    ),
    "ko": ("짧게", "간단히", "간단하게", "한 문장", "한 줄", "한 단어", "이름만", "짧은", "간결", "제목만", "삼행시"),
    "ja": ("短く", "簡潔", "一言", "ひと言", "一文", "1文", "名前だけ", "短い", "キャッチコピー", "手短", "俳句"),
}
LONG = {
    "en": ("detail", "at least", "thorough", "in depth"),
    "zh-Hant": ("詳細", "至少", "以上"),
    "zh-Hans": ("详细", "至少", "以上"),
    "ko": ("자세히", "자세하게", "이상", "최소", "길게"),
    "ja": ("詳しく", "詳細", "以上", "少なくとも"),
}


def states_limit(prompt: str, kind: str, n: int, lang: str) -> bool:
    """The prompt states ``n``, a stricter number of the same sense (max 25 when it asks for at most
    20: room for punctuation), one unit in words, or a length in words (short / detailed)."""
    if kind.startswith("max"):
        nearby = range(max(1, n // 2), n + 1)
        words = BRIEF
    elif kind.startswith("min"):
        nearby = range(n, 2 * n + 1)
        words = LONG
    else:
        nearby, words = range(n, n + 1), {}
    if any(states_number(prompt, m, lang) for m in nearby):
        return True
    text = fold(prompt)
    return (n == 1 and any(fold(w) in text for w in ONE[lang])) or any(
        fold(w) in text for language in words for w in words[language]
    )


COUNT_FIELDS = {
    "max_words": ("value",),
    "min_words": ("value",),
    "max_chars": ("value",),
    "min_chars": ("value",),
    "max_sentences": ("value",),
    "bullets": ("value",),
    "numbered": ("value",),
    "paragraphs": ("value",),
    "keyword_count": ("min", "max"),
    "highlights": ("min",),
}
WORD_FIELDS = ("include", "exclude", "starts_with", "ends_with", "keyword_count")


# Rules a prompt states without naming the word or number, reviewed one by one. Each names why
# (answer: the word is the correct answer of the question the cue asks; class: the cue forbids a
# class the words belong to; variant: another spelling of a word the prompt names; count: the cue
# enumerates the count) and a cue that must occur in the prompt, so an edit of the prompt that
# drops what states the rule fails here too.
STATED_BY: dict[tuple[str, str], tuple[str, str]] = {
    ("verifiable-en-005", "include"): ("answer", "the novel Pride and Prejudice"),
    ("verifiable-en-017", "include"): ("answer", "famous Scottish lochs"),
    ("verifiable-en-036", "include"): ("answer", "la capitale de l'Australie"),
    ("verifiable-en-037", "include"): ("answer", '"gracias" en inglés'),
    ("verifiable-en-043", "include"): ("answer", "the seven continents"),
    ("verifiable-en-054", "include"): ("answer", "chemical symbol for gold"),
    ("verifiable-en-059", "include"): ("answer", "definition of a haiku"),
    ("verifiable-en-064", "include"): ("answer", "the number written as a digit"),
    ("multiturn-en-003", "include"): ("answer", "how many weeks"),
    ("multiturn-en-011", "include"): ("answer", "capital of Canada"),
    ("multiturn-en-019", "include"): ("answer", "who wrote the book"),
    ("multiturn-en-021", "include"): ("answer", "£6 each, and there are two of us"),
    ("multiturn-en-022", "include"): ("answer", "How many words"),
    ("multiturn-en-023", "include"): ("answer", "three largest cities in Scotland"),
    ("multiturn-en-027", "json"): ("answer", "maps each planet's name"),
    ("multiturn-en-031", "include"): ("answer", "running total"),
    ("verifiable-zh-Hant-024", "include"): ("answer", "台灣最高的山"),
    ("verifiable-zh-Hant-049", "highlights"): ("count", "標出時間和地點"),
    ("verifiable-zh-Hant-062", "include"): ("answer", "國際電話國碼"),
    ("multiturn-zh-Hant-003", "include"): ("answer", "預算還剩多少"),
    ("multiturn-zh-Hant-011", "exclude"): ("class", "不要用任何阿拉伯數字"),
    ("multiturn-zh-Hant-027", "include"): ("answer", "total"),
    ("verifiable-zh-Hans-024", "include"): ("answer", "的下一句是什么"),
    ("verifiable-zh-Hans-049", "highlights"): ("count", "标出时间和地点"),
    ("verifiable-zh-Hans-062", "include"): ("answer", "北京奥运会是哪一年"),
    ("multiturn-zh-Hans-027", "include"): ("answer", "合计"),
    ("multiturn-zh-Hans-027", "numbered"): ("count", "房租2500元，伙食1200元，交通300元，其他500元"),
    ("multiturn-zh-Hans-032", "include"): ("answer", "作者是谁"),
    ("verifiable-ko-015", "include"): ("answer", "capital of South Korea"),
    ("verifiable-ko-016", "include"): ("answer", "what bibimbap is"),
    ("verifiable-ko-018", "include"): ("answer", "광역시 여섯 곳"),
    ("verifiable-ko-019", "include"): ("answer", "대표적인 명절 두 가지"),
    ("verifiable-ko-036", "include"): ("answer", "나라꽃은 무엇인가요"),
    ("verifiable-ko-043", "bullets"): ("count", "장점 하나와 단점 하나"),
    ("verifiable-ko-051", "include"): ("answer", "韓国で一番高い山"),
    ("verifiable-ko-063", "include"): ("answer", "주민센터에서 해야 할 일"),
    ("multiturn-ko-005", "include"): ("answer", "넣은 원금은 얼마예요"),
    ("multiturn-ko-007", "exclude"): ("class", "반말로"),
    ("multiturn-ko-012", "exclude"): ("class", "영어 단어를 하나도 쓰지 말아"),
    ("multiturn-ko-020", "include"): ("answer", "얼마를 아낄 수 있는지"),
    ("multiturn-ko-023", "include"): ("answer", "5대 궁궐"),
    ("multiturn-ko-030", "include"): ("answer", "총 얼마 썼어요"),
    ("multiturn-ko-032", "exclude"): ("class", "매운 음식을 전혀 못 먹어요"),
    ("verifiable-ja-005", "exclude"): ("variant", "「おいしい」「うまい」という言葉を使わずに"),
    ("verifiable-ja-015", "include"): ("answer", "highest mountain in Japan"),
    ("verifiable-ja-016", "include"): ("answer", "onsen etiquette"),
    ("verifiable-ja-018", "include"): ("answer", "日本の三大都市圏"),
    ("verifiable-ja-019", "include"): ("answer", "ゴールデンウィークに含まれる国民の祝日"),
    ("verifiable-ja-031", "exclude"): ("variant", "卵焼きは除いて"),
    ("verifiable-ja-036", "include"): ("answer", "いちばん長い川"),
    ("verifiable-ja-040", "include"): ("answer", "正しい読み方"),
    ("verifiable-ja-041", "include"): ("answer", "肉じゃがの作り方"),
    ("verifiable-ja-043", "bullets"): ("count", "1つずつ"),
    ("verifiable-ja-049", "include"): ("answer", "日本三名園"),
    ("verifiable-ja-051", "include"): ("answer", "日本最大的湖"),
    ("multiturn-ja-004", "include"): ("answer", "1年でいくら節約できますか"),
    ("multiturn-ja-005", "exclude"): ("class", "漢字ではなく、ひらがなで書きます"),
    ("multiturn-ja-007", "exclude"): ("class", "全部関西弁で"),
    ("multiturn-ja-011", "exclude"): ("class", "敬語を使わないで"),
    ("multiturn-ja-012", "exclude"): ("class", "カタカナ語（外来語）を使わないで"),
    ("multiturn-ja-016", "include"): ("class", "ひらがなを多めにして"),
    ("multiturn-ja-020", "include"): ("answer", "差額も"),
    ("multiturn-ja-021", "include"): ("answer", "お供をした動物を全部"),
    ("multiturn-ja-023", "include"): ("answer", "春の七草"),
    ("multiturn-ja-028", "include"): ("answer", "帰ってくるのは何日"),
    ("multiturn-ja-030", "include"): ("answer", "今日の合計はいくら"),
    ("multiturn-ja-032", "exclude"): ("class", "乳製品が苦手"),
}
REASONS = ("answer", "class", "variant", "count")


def unstated(prompt: str, rule: dict, lang: str) -> list[str]:
    """What ``rule`` asks that ``prompt`` does not state."""
    missing = []
    kind = rule["type"]
    if kind in WORD_FIELDS:
        values = rule["value"] if isinstance(rule["value"], list) else [rule["value"]]
        missing += [f"{kind} {v!r}" for v in values if fold(v).strip(" 。.！!") not in fold(prompt)]
    for field in COUNT_FIELDS.get(kind, ()):
        n = rule.get(field)
        if n is None or n == 0 or (kind == "highlights" and n == 1):
            continue
        if kind == "keyword_count" and field == "min" and n == 1:
            continue  # "use the word X" states min 1
        if not states_limit(prompt, kind if field == "value" else field, n, lang):
            missing.append(f"{kind} {field}={n}")
    if kind == "json":
        missing += [f"json key {k!r}" for k in rule.get("keys", []) if fold(k) not in fold(prompt)]
    return missing


def check(langs: list[str]) -> list[str]:
    problems = []
    used = set()
    for lang in langs:
        for suite in SUITES:
            for line in (DATA / lang / f"{suite}.jsonl").read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                sample = json.loads(line)
                prompt = "\n".join(sample["turns"]) if "turns" in sample else sample["prompt"]
                for rule in sample["rules"]:
                    missing = unstated(prompt, rule, lang)
                    key = (sample["id"], rule["type"])
                    if missing and key in STATED_BY:
                        used.add(key)
                        reason, cue = STATED_BY[key]
                        if reason not in REASONS or fold(cue) not in fold(prompt):
                            problems.append(f"{sample['id']}: {rule['type']} is stated by {cue!r}, not in the prompt")
                        continue
                    problems += [f"{sample['id']}: {what} is not stated in the prompt" for what in missing]
    if set(langs) == set(LANGUAGES):
        problems += [f"{i}: {t} is listed in STATED_BY but stated in the prompt" for i, t in set(STATED_BY) - used]
    return problems


def main(argv: list[str]) -> int:
    langs = argv or list(LANGUAGES)
    problems = check(langs)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} rule(s) not stated in their prompt ({', '.join(langs)})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
