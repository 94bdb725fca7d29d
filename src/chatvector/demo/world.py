"""A small synthetic bilingual world: people and facts, in English and Traditional Chinese.

Everything the demo trains on and asks about comes from here, generated from a seed. Each person
has a name in both languages and five attributes (city, job, colour, food, age); each attribute
value has an English and a Traditional Chinese word. Names and values are single tokens in the
demo's tokenizer, so a fact learnt about "Alice" is the same fact about "愛麗絲".

The people fall into three groups, which is what makes the demo's question sharp:

- ``chat_people``: their facts are in the English pre-training text, and the English chat
  transcripts ask about them;
- ``known_people``: their facts are in the pre-training text too, but no chat transcript mentions
  them (they tell whether chat tuning generalises to people it was not tuned on);
- ``held_out``: their facts are written only in the Traditional Chinese documents of continual
  pre-training, as knowledge that only the new language's text holds. The evaluation asks about
  them, in Chinese: base and chat cannot know the answers, cp knows them but cannot chat.
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
    ("noodles", "麵條"),
    ("bread", "麵包"),
    ("apples", "蘋果"),
    ("fish", "魚肉"),
    ("cake", "蛋糕"),
    ("soup", "湯品"),
    ("tofu", "豆腐"),
]
VALUES = {"city": CITIES, "job": JOBS, "colour": COLOURS, "food": FOODS}


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
    chat_people: tuple[Person, ...]  # in English pre-training text and in the chat transcripts
    known_people: tuple[Person, ...]  # in pre-training text, never in a chat transcript
    held_out: tuple[Person, ...]  # facts only in the Chinese cp documents; asked about in evaluation

    @property
    def pretraining_people(self) -> tuple[Person, ...]:
        """People whose facts the base model's (mostly English) text states."""
        return tuple(p for p in self.people if p not in self.held_out)


def make_world(seed: int, n_people: int = 40, n_held_out: int = 10, n_known: int = 10) -> World:
    """Assign attributes to people and people to groups, deterministically from ``seed``."""
    rng = random.Random(seed)
    people = [
        Person(
            en,
            zh,
            rng.choice(CITIES),
            rng.choice(JOBS),
            rng.choice(COLOURS),
            rng.choice(FOODS),
            rng.randint(18, 79),
        )
        for en, zh in NAMES[:n_people]
    ]
    order = list(range(len(people)))
    rng.shuffle(order)
    held = tuple(people[i] for i in sorted(order[:n_held_out]))
    known = tuple(people[i] for i in sorted(order[n_held_out : n_held_out + n_known]))
    chat = tuple(people[i] for i in sorted(order[n_held_out + n_known :]))
    return World(tuple(people), chat, known, held)
