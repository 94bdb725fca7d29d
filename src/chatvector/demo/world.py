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
    ("Olivia", "奧莉薇亞"),
    ("Peter", "彼得"),
    ("Quinn", "昆恩"),
    ("Ruby", "露比"),
    ("Steve", "史蒂夫"),
    ("Tony", "東尼"),
    ("Ursula", "烏蘇拉"),
    ("Vera", "薇拉"),
    ("Walter", "華特"),
    ("Yuri", "尤里"),
    ("Zoe", "柔伊"),
    ("Adam", "亞當"),
    ("Bella", "貝拉"),
    ("Chris", "克里斯"),
    ("Diana", "黛安娜"),
    ("Ethan", "伊森"),
    ("Felix", "菲利克斯"),
    ("Gina", "吉娜"),
    ("Harry", "哈利"),
    ("Ivy", "艾薇"),
    ("James", "詹姆斯"),
    ("Karen", "凱倫"),
    ("Lucas", "盧卡斯"),
    ("Mia", "米亞"),
    ("Nora", "諾拉"),
    ("Owen", "歐文"),
    ("Peggy", "佩姬"),
    ("Ray", "雷伊"),
    ("Sara", "莎拉"),
    ("Tom", "湯姆"),
    ("Ulysses", "尤利西斯"),
    ("Vivian", "薇薇安"),
    ("William", "威廉"),
    ("Yolanda", "尤蘭達"),
    ("Zara", "扎拉"),
    ("Andrew", "安德魯"),
    ("Betty", "貝蒂"),
    ("Charles", "查爾斯"),
    ("Doris", "桃樂絲"),
    ("Edward", "愛德華"),
    ("Flora", "芙蘿拉"),
    ("Gary", "蓋瑞"),
    ("Hannah", "漢娜"),
    ("Isaac", "艾薩克"),
    ("Jenny", "珍妮"),
    ("Kyle", "凱爾"),
    ("Lily", "莉莉"),
    ("Martin", "馬丁"),
    ("Nina", "妮娜"),
    ("Olga", "奧嘉"),
    ("Patrick", "派翠克"),
    ("Rachel", "瑞秋"),
    ("Simon", "賽門"),
    ("Teresa", "泰瑞莎"),
    ("Vincent", "文森"),
    ("Wanda", "汪達"),
    ("Yusuf", "優素福"),
    ("Zeke", "齊克"),
    ("Albert", "艾伯特"),
    ("Barbara", "芭芭拉"),
    ("Cathy", "凱西"),
    ("Dennis", "丹尼斯"),
    ("Ella", "艾拉"),
    ("Fred", "佛瑞德"),
    ("Gloria", "葛洛莉亞"),
    ("Howard", "霍華"),
    ("Isabel", "伊莎貝爾"),
    ("Jason", "傑森"),
    ("Kelly", "凱莉"),
    ("Louis", "路易斯"),
    ("Monica", "莫妮卡"),
    ("Neil", "尼爾"),
    ("Oliver", "奧利佛"),
    ("Philip", "菲利普"),
    ("Rita", "麗塔"),
    ("Susan", "蘇珊"),
    ("Tracy", "崔西"),
    ("Vanessa", "凡妮莎"),
    ("Wesley", "衛斯理"),
    ("Yasmin", "雅絲敏"),
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


HELD_OUT_PEOPLE = 80  # × 5 attributes: 400 distinct held-out facts, 200 on each side of a 50/50 split
KNOWN_PEOPLE = 10
CHAT_PEOPLE = 20


def make_world(
    seed: int, n_held_out: int = HELD_OUT_PEOPLE, n_known: int = KNOWN_PEOPLE, n_chat: int = CHAT_PEOPLE
) -> World:
    """Assign attributes to people and people to groups, deterministically from ``seed``.

    Raises:
        ValueError: more people are asked for than :data:`NAMES` holds.
    """
    n_people = n_held_out + n_known + n_chat
    if n_people > len(NAMES) or min(n_held_out, n_known, n_chat) < 1:
        raise ValueError(f"a world of {n_people} people needs 1–{len(NAMES)} names, at least one per group")
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
