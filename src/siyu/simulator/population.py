"""Synthetic people: who walks past the brand's store, visits, buys and adds a staff member.

Every person is a pure function of ``(seed, index)``: ``Population(seed).person(7)`` is the
same person in every run and every process, whatever else the simulator drew before. The
names come from fixed lists of common surnames and given names (a quarter of the people
show a WeChat nickname instead of a real name, as on WeChat); gender, age, birthday, city
and interests follow simple weighted draws; the ``persona`` scales how often the person
does things once they are a customer (lurkers rarely speak, fans chat and refer friends).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


SURNAMES = _words(
    "王 李 张 刘 陈 杨 黄 赵 吴 周 徐 孙 马 朱 胡 郭 何 林 高 罗 郑 梁 谢 宋 唐 许 韩 冯 邓 曹 "
    "彭 曾 肖 田 董 潘 袁 蔡 蒋 余 于 杜 叶 程 魏 苏 吕 丁 任 卢 姚 沈 钟 姜 崔 谭 陆 范 汪 廖 "
    "石 金 贾 夏 韦 付 方 邹 熊 白 孟 秦 邱 侯 江 尹 薛 闫 段 雷 龙 黎 史 陶 贺 毛 郝 顾 龚 邵 "
    "万 钱 戴 严 莫 孔 向 常 欧阳 司马"
)
FEMALE_GIVEN = _words(
    "婷 芳 丽 敏 静 燕 娟 霞 秀 玲 萍 红 娜 琳 雪 慧 颖 倩 洁 欣 怡 悦 佳 蕾 薇 雯 晶 璐 瑶 萌 "
    "梦 思 雨 诗 涵 可 馨 月 彤 琪 媛 露 岚 莉 菲 晓 丹 妍 婉 素 嘉 若 语 梓 安 宁"
)
MALE_GIVEN = _words(
    "伟 强 磊 军 洋 勇 杰 涛 明 超 辉 刚 鹏 浩 宇 轩 博 晨 峰 鑫 斌 凯 健 俊 帆 然 哲 睿 翔 阳 "
    "航 飞 毅 昊 天 文 子 一 泽 志 建 国 华 亮 旭 东 岩 坤 宏 成 诚 嘉 安 宁"
)
NICKNAMES = _words(
    "小鱼儿 阳光 Lucky Amy 晴天 木子 一米阳光 Sunny 云朵 向日葵 Coco 柠檬 静待花开 岁月静好 "
    "Jessica Kevin 大雄 糖糖 花开富贵 平安是福 橘子汽水 Momo 小太阳 追梦人 Vivian 芒果布丁 "
    "清风徐来 Leo 奶茶续命 咸鱼翻身 森林 Grace 小笼包 蓝天白云 Tony 兔子 自在 Alice 星星"
)
# (city, weight): where a Chinese consumer brand's customers tend to live.
CITIES = (
    ("上海", 12),
    ("北京", 10),
    ("广州", 8),
    ("深圳", 8),
    ("杭州", 7),
    ("成都", 7),
    ("南京", 5),
    ("武汉", 5),
    ("重庆", 5),
    ("苏州", 4),
    ("西安", 4),
    ("长沙", 4),
    ("天津", 3),
    ("郑州", 3),
    ("青岛", 3),
    ("宁波", 2),
    ("合肥", 2),
    ("厦门", 2),
    ("佛山", 2),
    ("昆明", 2),
)
INTERESTS = _words(
    "美妆 护肤 母婴 健身 瑜伽 咖啡 烘焙 美食 户外 露营 摄影 读书 旅行 宠物 数码 穿搭 "
    "家居 茶 养生 电影 音乐 手工 绘画 跑步 潮玩"
)
FEMALE_SHARE = 0.6  # a consumer brand's public traffic leans female


@dataclass(frozen=True)
class Persona:
    """How a kind of person behaves once in the private domain.

    ``multipliers`` scale the daily probabilities of ``FunnelRates`` by behaviour name
    (chat, group_message, join_group, leave_group, delete_staff, referral, repurchase);
    the population-weighted mean of each multiplier is about 1, so that the rates stay
    population averages.
    """

    code: str
    label: str
    weight: float
    multipliers: dict[str, float] = field(default_factory=dict)

    def factor(self, behaviour: str) -> float:
        return self.multipliers.get(behaviour, 1.0)


PERSONAS = (
    Persona(
        "lurker",
        "潜水型",
        0.40,
        {"chat": 0.3, "group_message": 0.2, "join_group": 0.7, "referral": 0.2, "repurchase": 0.6},
    ),
    Persona("regular", "普通型", 0.30, {}),
    Persona(
        "chatty",
        "活跃型",
        0.15,
        {"chat": 2.8, "group_message": 3.2, "join_group": 1.6, "leave_group": 0.5},
    ),
    Persona(
        "bargain_hunter",
        "价格敏感型",
        0.10,
        {"chat": 1.2, "delete_staff": 3.0, "leave_group": 2.5, "repurchase": 0.8},
    ),
    Persona(
        "fan",
        "忠实粉丝",
        0.05,
        {
            "chat": 2.0,
            "group_message": 3.0,
            "join_group": 2.0,
            "delete_staff": 0.1,
            "leave_group": 0.1,
            "referral": 6.0,
            "repurchase": 3.0,
        },
    ),
)
PERSONA_BY_CODE = {p.code: p for p in PERSONAS}


@dataclass(frozen=True)
class Person:
    """A synthetic person. ``name`` is what WeChat shows (maybe a nickname)."""

    index: int
    name: str
    real_name: str
    gender: int  # WeCom's values: 1 male, 2 female
    age: int
    birthday: str  # "MM-DD"
    city: str
    interests: tuple[str, ...]
    persona: Persona

    def customer_fields(self) -> dict[str, object]:
        """What the emulator's control API takes to create this person as a WeChat user."""
        return {"name": self.name, "gender": self.gender}


class Population:
    """Deterministic people: ``person(i)`` depends only on the seed and ``i``."""

    def __init__(self, seed: int | str = 0) -> None:
        self.seed = seed

    def rng_for(self, index: int) -> random.Random:
        return random.Random(f"siyu-person:{self.seed}:{index}")

    def person(self, index: int) -> Person:
        rng = self.rng_for(index)
        gender = 2 if rng.random() < FEMALE_SHARE else 1
        given = FEMALE_GIVEN if gender == 2 else MALE_GIVEN
        length = 2 if rng.random() < 0.6 else 1
        real_name = rng.choice(SURNAMES) + "".join(rng.choice(given) for _ in range(length))
        name = rng.choice(NICKNAMES) if rng.random() < 0.25 else real_name
        # ages 18-60, most customers in their late twenties to early forties
        age = int(rng.triangular(18, 60, 32))
        month = rng.randint(1, 12)
        day = rng.randint(1, 28 if month == 2 else 30 if month in (4, 6, 9, 11) else 31)
        city = rng.choices([c for c, _ in CITIES], weights=[w for _, w in CITIES])[0]
        interests = tuple(rng.sample(INTERESTS, rng.randint(1, 3)))
        persona = rng.choices(PERSONAS, weights=[p.weight for p in PERSONAS])[0]
        return Person(
            index=index,
            name=name,
            real_name=real_name,
            gender=gender,
            age=age,
            birthday=f"{month:02d}-{day:02d}",
            city=city,
            interests=interests,
            persona=persona,
        )

    def people(self, start: int, count: int) -> list[Person]:
        return [self.person(i) for i in range(start, start + count)]
