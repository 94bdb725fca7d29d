"""A small synthetic bilingual world: people and facts, in English and Traditional Chinese.

Everything the demo trains on and asks about comes from here, generated from a seed. Each person
has a name in both languages and five attributes (city, job, colour, food, age); each attribute
value has an English and a Traditional Chinese word. Names are single tokens in the demo's
tokenizer so that a fact learnt about "Alice" is the same fact about "愛麗絲".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# (English, Traditional Chinese) pairs, written for this project.
NAMES = [
    ("Alice", "愛麗絲"),
    ("Bob", "鮑伯"),
    ("Carol", "卡蘿"),
    ("David", "大衛"),
    ("Emma", "艾瑪"),
    ("Frank", "法蘭克"),
    ("Grace", "葛蕾絲"),
    ("Henry", "亨利"),
    ("Irene", "艾琳"),
    ("Jack", "傑克"),
    ("Kevin", "凱文"),
    ("Linda", "琳達"),
    ("Mike", "麥克"),
    ("Nancy", "南西"),
    ("Oscar", "奧斯卡"),
    ("Paul", "保羅"),
    ("Queenie", "昆妮"),
    ("Rose", "蘿絲"),
    ("Sam", "山姆"),
    ("Tina", "蒂娜"),
    ("Uma", "烏瑪"),
    ("Victor", "維克多"),
    ("Wendy", "溫蒂"),
    ("Xavier", "薩維爾"),
    ("Yvonne", "伊馮"),
    ("Zack", "札克"),
    ("Amy", "艾咪"),
    ("Brian", "布萊恩"),
    ("Cindy", "辛蒂"),
    ("Daniel", "丹尼爾"),
    ("Eric", "艾瑞克"),
    ("Fiona", "費歐娜"),
    ("George", "喬治"),
    ("Helen", "海倫"),
    ("Ian", "伊恩"),
    ("Julia", "茱莉亞"),
    ("Kate", "凱特"),
    ("Leo", "里歐"),
    ("Mary", "瑪麗"),
    ("Nick", "尼克"),
]
CITIES = [
    ("London", "倫敦"),
    ("Paris", "巴黎"),
    ("Tokyo", "東京"),
    ("Seoul", "首爾"),
    ("Taipei", "台北"),
    ("Berlin", "柏林"),
    ("Rome", "羅馬"),
    ("Sydney", "雪梨"),
]
JOBS = [
    ("doctor", "醫生"),
    ("teacher", "老師"),
    ("farmer", "農夫"),
    ("singer", "歌手"),
    ("cook", "廚師"),
    ("pilot", "機師"),
    ("lawyer", "律師"),
    ("painter", "畫家"),
]
COLOURS = [
    ("red", "紅色"),
    ("blue", "藍色"),
    ("green", "綠色"),
    ("yellow", "黃色"),
    ("black", "黑色"),
    ("white", "白色"),
    ("purple", "紫色"),
    ("orange", "橘色"),
]
FOODS = [
    ("rice", "米飯"),
    ("noodles", "麵"),
    ("bread", "麵包"),
    ("apples", "蘋果"),
    ("fish", "魚"),
    ("cake", "蛋糕"),
    ("soup", "湯"),
    ("tofu", "豆腐"),
]
NUMBERS_ZH = {i: z for i, z in enumerate("零一二三四五六七八九", start=0)}


def number_zh(n: int) -> str:
    """Traditional Chinese numeral for 0–99 (e.g. 42 → 四十二)."""
    if n < 10:
        return NUMBERS_ZH[n]
    tens, ones = divmod(n, 10)
    head = "" if tens == 1 else NUMBERS_ZH[tens]
    return head + "十" + (NUMBERS_ZH[ones] if ones else "")


@dataclass(frozen=True)
class Person:
    en: str
    zh: str
    city: tuple[str, str]
    job: tuple[str, str]
    colour: tuple[str, str]
    food: tuple[str, str]
    age: int


@dataclass(frozen=True)
class World:
    people: tuple[Person, ...]
    chat_people: tuple[Person, ...]  # whose facts appear in the English chat transcripts
    held_out: tuple[Person, ...]  # asked about only in evaluation


def make_world(seed: int, n_people: int = 40, n_held_out: int = 10) -> World:
    """Assign attributes to people deterministically from ``seed``."""
    rng = random.Random(seed)
    people = []
    for en, zh in NAMES[:n_people]:
        people.append(
            Person(
                en,
                zh,
                rng.choice(CITIES),
                rng.choice(JOBS),
                rng.choice(COLOURS),
                rng.choice(FOODS),
                rng.randint(18, 79),
            )
        )
    order = list(range(len(people)))
    rng.shuffle(order)
    held = tuple(people[i] for i in sorted(order[:n_held_out]))
    chat = tuple(people[i] for i in sorted(order[n_held_out:]))
    return World(tuple(people), chat, held)
