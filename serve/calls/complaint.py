"""``complaint``: the customer complains, says they will complain or report, or asks how to.

LABELS.md: to the lender, a regulator (12378, 12363, 金融监管局), the consumer association, the
police, a lawyer or the media; complaints about harassment count (the call then goes to
complaint handling). Anger without a complaint is not one; a complaint without anger is.

Rules over customer turns in detector text (:func:`serve.calls.text.detector_text`), each a
*kind* reported in the evidence:

- ``intent``: 投诉 / 举报 / 曝光 / 维权 in a customer turn, or 报警 / 起诉 / 告 with the customer as
  the one acting (我要报警, 我去告你们 — not 你去起诉吧, 你们报警抓我啊);
- ``channel``: a complaint channel with a verb that goes to it (打12378, 找消协, 向监管局反映, 请律师,
  找记者), or a bare hotline number (12378, 12363, 12315);
- ``how``: asking how or where to complain (怎么投诉, 投诉电话多少, 你们领导电话给我);
- ``harassment``: 骚扰, 暴力催收, calls that never stop (一天打十几个电话, 天天打), or contacting the
  customer's family, employer or friends (凭什么给我家人打电话).

A match right after a negation (不会, 没打算, 不想, 不用, 不是要 …) does not count. Evidence: the
segment index, the matched words and the kind. What it cannot know: tone, or a complaint made
outside the call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from model.labels import CUSTOMER
from serve.calls.flag import flag
from serve.calls.text import detector_text

_NEGATION = re.compile(
    r"(?:不会|不想|不打算|没打算|没想|不是要|不是想|不用|不需要|没必要|不至于|不去|没有要|别|不要|不必|懒得|没说要)[^,。!?]{0,3}$"
)
_NEGATED_INSIDE = re.compile(r"不会|不想|不打算|没打算|不是要|不用|不需要|没必要|不至于|没有要")
_SELF = r"(?:我|俺|我们|我家|我老公|我老婆|我爸|我妈|我儿子|我女儿|我家人)[^,。!?你]{0,6}?"
_CHANNEL = (
    r"12378|12363|12315|银保监|保监会|银监会|金融监管|监管局|监管部门|监管机构|人民银行|人行|央行|消协|消费者协会|"
    r"市场监管|工商局|黑猫投诉|媒体|记者|电视台|报社|网上曝光|微博|抖音|派出所|公安局|110|律师|上级部门|有关部门|"
    r"相关部门|金融办|信访"
)
_TO_CHANNEL = (
    r"(?:打|拨|找|去|到|向|给|跟|告到|告诉|反映到|反映给|举报到|投诉到|请|咨询|问问|问过|委托|联系|发到|发给|上)"
)
_RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "how",
        re.compile(
            r"(?:怎么|如何|去哪|去哪儿|去哪里|在哪|哪里|哪儿|哪个部门|什么地方|向谁|找谁)(?:能|可以|去|才能)?(?:投诉|举报|反映)"
        ),
    ),
    ("how", re.compile(r"(?:投诉|举报|监管)(?:的)?(?:电话|热线|渠道|方式|邮箱|部门|入口)")),
    (
        "how",
        re.compile(
            r"(?:你们|你的)[^,。!?]{0,3}?(?:领导|上级|主管|经理|负责人|总部|客服)(?:的)?(?:电话|号码|联系方式|是谁|叫什么)"
        ),
    ),
    ("intent", re.compile(r"投诉|举报|曝光|维权|告状|上访")),
    ("intent", re.compile(rf"{_SELF}(?:报警|报案|打110|起诉|告你|告你们|告到|去告|上诉)")),
    ("intent", re.compile(r"(?:报警|报案)了|(?:已经|马上|现在就|这就|立刻)(?:报警|报案|起诉)")),
    ("channel", re.compile(rf"{_TO_CHANNEL}(?:个|一下|了)?(?:{_CHANNEL})")),
    ("channel", re.compile(r"(?<!\d)(?:12378|12363|12315)(?!\d)")),
    ("harassment", re.compile(r"骚扰|暴力催收|恐吓我|威胁我|侮辱我|被你们骂|打爆|轰炸|呼死你")),
    (
        "harassment",
        re.compile(
            r"(?:一天|一上午|一下午|一晚上|每天|天天|一直|不停|反复|老是|总是|没完没了|一天到晚)(?:地)?(?:给我)?打(?:了)?(?:[0-9一二三四五六七八九十几]+[个通次遍])?(?:电话)?(?!不通|不进|错)"
        ),
    ),
    (
        "harassment",
        re.compile(
            r"(?:凭什么|为什么|谁让你|谁允许你|你们怎么|怎么能)[^,。!?]{0,4}(?:给|打给|打到|找|联系|通知)(?:我)?(?:的)?(?:家人|家里|父母|爸|妈|老婆|老公|单位|公司|领导|同事|朋友|亲戚|通讯录|孩子|学校)"
        ),
    ),
]


def find_complaints(text: str) -> list[dict[str, Any]]:
    """``[{"kind", "text", "at"}]`` in one customer turn's detector text; negated matches dropped."""
    out = []
    for kind, pattern in _RULES:
        for m in pattern.finditer(text):
            if (
                _NEGATION.search(text[: m.start()])
                or _NEGATED_INSIDE.search(m.group(0))
                or any(o["at"] <= m.start() < o["end"] for o in out)
            ):
                continue
            out.append({"kind": kind, "text": m.group(0), "at": m.start(), "end": m.end()})
    return sorted(out, key=lambda o: o["at"])


def is_complaint(text: str) -> bool:
    """Does one customer turn complain (the unit ``train/calleval.py`` measures)?"""
    return bool(find_complaints(detector_text(text)))


def complaint(segments: Sequence[Any]) -> dict[str, Any]:
    """The check on one call: raised when any customer turn complains."""
    customer = [i for i, s in enumerate(segments) if _get(s, "speaker") == CUSTOMER]
    hits = []
    for i in customer:
        for hit in find_complaints(detector_text(_get(segments[i], "text") or "")):
            hits.append({"segment": i, "text": hit["text"], "kind": hit["kind"]})
    if hits:
        kinds = sorted({h["kind"] for h in hits})
        return flag(True, f"the customer complains ({', '.join(kinds)}): route to complaint handling", matches=hits)
    reason = "no customer turn complains" if customer else "no customer speech in the call"
    return flag(False, reason, matches=[])


def _get(segment: Any, name: str) -> Any:
    return segment.get(name) if isinstance(segment, dict) else getattr(segment, name, None)
