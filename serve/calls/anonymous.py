"""``anonymous_collection``: the agent does not say who they act for and who they are before the debt.

LABELS.md: on a call the agent places, the agent must state the institution (lender, bank or
agency **by name**) and themself (name, surname with a title, or staff number) before talking
about the debt. Saying it later, or only to a third party who asks, does not cure it; inbound
calls are not judged. Here "before" also means within the first ``calls.identify_within_turns``
agent turns.

The detector reads agent turns in order (as :func:`serve.calls.text.detector_text` gives them)
and finds three things with positions:

- **institution**: a name ending in an institution word (银行, 消费金融, 小贷, 资产管理, 律师事务所,
  有限公司, 信用卡中心, 科技, XX贷 …), or a brand name in 我是/这边是 X 的工作人员|客服|专员, 受 X 委托,
  代表 X, 来自 X. Generic words (我们公司, 贵行, 银行的, 第三方机构) are not a name;
- **person**: 工号/员工号 + a number (also in Chinese numerals), 我姓X, 我叫X, 我是 + surname +
  given name or title (我是李明, 这边是王经理, 我是小张), or a surname after the institution
  (瑞丰银行的李经理). A placeholder or mask (某) stands for a name;
- **debt talk**: 欠款, 逾期, 还款, 账单, 借款, 本金, 最低还款, 结清 … outside institution names.

Raised when the institution or the person is missing before the first debt talk (or within
the allowed turns), with evidence: what was found where, what was missing, and the debt words.
What it cannot know: whether the name given is true, or what was said before the recording.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model.config import CallsConfig
from model.labels import AGENT, CUSTOMER
from serve.calls.flag import flag
from serve.calls.metadata import INBOUND, THIRD_PARTY, CallMetadata
from serve.calls.text import detector_text, digits_of

_ORG_SUFFIXES = [
    "消费金融有限公司",
    "消费金融股份有限公司",
    "消费金融公司",
    "消费金融",
    "消金",
    "小额贷款有限公司",
    "小额贷款公司",
    "小额贷款",
    "小贷公司",
    "小贷",
    "融资担保有限公司",
    "融资担保",
    "担保公司",
    "资产管理有限公司",
    "资产管理公司",
    "资产管理",
    "信用卡中心",
    "信用卡部",
    "信用卡",
    "银行",
    "农商行",
    "农商银行",
    "农村商业银行",
    "信用社",
    "农信社",
    "金融服务",
    "金融科技",
    "资产",
    "金融信息",
    "金融",
    "网络科技有限公司",
    "网络科技",
    "科技有限公司",
    "科技公司",
    "科技",
    "信息技术",
    "信息咨询",
    "商务咨询",
    "咨询有限公司",
    "咨询公司",
    "律师事务所",
    "律师所",
    "法务部",
    "法务中心",
    "调解中心",
    "调解委员会",
    "催收公司",
    "外包公司",
    "有限责任公司",
    "有限公司",
    "股份公司",
    "集团",
    "信托",
    "保险",
    "借呗",
    "花呗",
    "白条",
    "钱包",
    "钱庄",
    "分期",
    "借条",
    "速贷",
    "e贷",
    "贷",
    "app",
    "平台",
]
_ORG_SUFFIX = "|".join(sorted(map(re.escape, _ORG_SUFFIXES), key=len, reverse=True))
# Name characters of an institution: CJK, Latin, digits, the stand-in 某.
_NAME_CH = r"(?:(?![的是])[\u4e00-\u9fffa-z0-9某])"
_GENERIC_NAMES = re.compile(
    r"^(?:你们|我们|咱们|他们|贵|本|该|这家|那家|一家|哪家|某些|什么|正规|合法|第三方|合作|相关|委托|其他|其它|大|小|"
    r"网络|网上|线上|借款|贷款|网贷|借贷|手机|这个|那个|这边|那边|我这边|我们这边|对应|指定|您的|你的|您|你|我|的|是|"
    r"一个|那|这|商业|国有|私人|个人|某个|有关|贷后|催收|外包|法律|专业|公司|金融|机构|银行|平台|网|咱|家|边|里)+$"
)
# Where an institution name starts: after these words (or punctuation / the turn's start).
_ORG_INTRO = (
    r"(?:这边是|这里是|这边呢是|我这边是|我们这边是|我们是|我是|我们这里是|是|来自|代表|受|为|属于|隶属|从|在|于|帮|替|"
    r"您好|你好|喂|,|。|!|\?|^)"
)
_ORG = re.compile(rf"{_ORG_INTRO}(?P<name>某|{_NAME_CH}{{2,14}}?)(?P<suffix>{_ORG_SUFFIX})")
# Words no institution name contains: a candidate name is what follows the last of them.
_FUNCTION_WORDS = re.compile(r"您|你|在|我们|你们|咱们|他们|这边|那边|这里|关于|吗|呢|吧|啊|工号|编号")
_INTRO_WORDS = re.compile(r"^(?:您好|你好|喂|这边|这里|我们|我|呢|是|那个|就是)+")
_BRAND = re.compile(
    rf"(?:这边是|这里是|我是|我们是|我这边是|我们这边是)(?P<name>某|{_NAME_CH}{{2,10}}?)的?"
    r"(?:工作人员|客服|员工|法务|贷后|外包|委托方|风控|[\u4e00-\u9fff]{0,3}(?:专员|人员|经理|主管|律师|助理|代表))"
)
# A template slot standing for the institution: 这边是{platform}, → 这边是某,
_PLACEHOLDER_ORG = re.compile(r"(?:这边是|这里是|我们是|我这边是|来自|受)(?P<name>某)(?:,|。|!|的|委托|$)")
_ENTRUSTED = re.compile(rf"(?:受|接受|代表|来自)(?P<name>{_NAME_CH}{{2,14}}?)(?:的)?(?:委托|授权|这边|方面|,|。|$)")

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪"
    "范金石廖贾夏韦付方白邹孟熊秦邱侯江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔汤易常温康施文牛樊葛邢安齐伍"
    "庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙"
    "鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边"
    "卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝某"
)
_COMPOUND = "欧阳|上官|司马|诸葛|东方|慕容|令狐|皇甫|尉迟|公孙|长孙|宇文|司徒|夏侯"
_SURNAME = f"(?:{_COMPOUND}|[{_SURNAMES}])"
# A job title right before a name (信贷员曹阳, 客户经理潘磊, 外访专员李明).
_ROLE = r"(?:专员|业务员|信贷员|催收员|调解员|柜员|客户经理|经理|主管|代表|律师|助理|组长)"
_GIVEN = r"(?:(?![的是,。])[\u4e00-\u9fff])"
_TITLE = "经理|专员|主管|组长|律师|助理|老师|先生|女士|小姐|调解员|顾问|客服|法务|主任|同事|工"
# Words that follow 我是 but start no name (我是关于…, 我是想…, 我是跟您…).
_NOT_A_NAME = re.compile(
    r"(?:关于|为了|跟您|跟你|给您|给你|和您|和你|向您|向你|想|来|要|说|打|问|代表|受|通知|提醒|特地|专门|负责|"
    r"从|于|真|那个|这个|就|也|在|有|本人|催收|以|因为|看|帮|替|银行|贷款|平台|公司|机构)"
)
_PERSON_PATTERNS = [
    re.compile(
        r"(?:工号|工牌号|员工号|员工编号|坐席号|编号|工号是|工号为)[是为:]?(?P<who>某|[0-9零〇一二三四五六七八九幺两a-z某]{2,10})"
    ),
    re.compile(rf"(?:我姓|免贵姓|姓)(?P<who>{_SURNAME})"),
    re.compile(r"(?:我叫|我的名字是|我名字叫)(?P<who>[\u4e00-\u9fff某]{1,3})"),
    re.compile(
        rf"(?:我是|这边是|这里是|我这边是|我这是|本人是|■的|■|工作人员|客服|法务|{_ROLE})(?!{_NOT_A_NAME.pattern})"
        rf"(?P<who>(?:小|老|阿)?{_SURNAME}(?:{_TITLE}|{_GIVEN}{{1,2}}(?:{_TITLE})?|某+)|(?:小|老){_SURNAME}|某)"
    ),
    re.compile(rf"(?P<who>{_SURNAME}(?:{_TITLE}))(?:这边|给您|跟您|,|。|$)"),
    re.compile(rf"的(?P<who>(?:小|老){_SURNAME})(?:{_GIVEN}?)(?:,|。|!|$|给您|跟您|这边)"),
]
_DEBT = re.compile(
    r"欠款|欠费|欠钱|欠了|欠的|欠我们|欠着|欠下|欠账|逾期|还款|还钱|还清|还上|还了|没还|未还|应还|待还|还一下|归还|结清|"
    r"账单|借款|贷款|本金|利息|罚息|违约金|滞纳金|最低还款|分期|到期|催收(?!专员|员|人员|部|公司|机构)|款项|这笔钱|那笔钱|钱的事|还一部分|"
    r"处理一下.{0,4}(?:账|款|欠)|债务|欠债"
)
_WHO_ASKS = re.compile(r"你是谁|你谁啊|哪位|哪里的|哪个单位|什么单位|哪个公司|什么公司|哪家|干什么的|干嘛的|你是哪")


@dataclass(frozen=True)
class Found:
    """A match: agent turn ``segment`` (index in the call), character ``at`` in its detector text."""

    segment: int
    at: int
    text: str

    def key(self) -> tuple[int, int]:
        return self.segment, self.at

    def as_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "text": self.text}


def find_institutions(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, name)`` of institution names in detector text (generic words excluded)."""
    out: list[tuple[int, int, str]] = []
    for pattern in (_ORG, _BRAND, _ENTRUSTED, _PLACEHOLDER_ORG):
        for m in pattern.finditer(text):
            name = _FUNCTION_WORDS.split(_INTRO_WORDS.sub("", m.group("name")))[-1]
            suffix = m.groupdict().get("suffix") or ""
            end = m.end("suffix") if suffix else m.end("name")
            start = end - len(name) - len(suffix)
            if _not_a_name(name, text[:start]) or any(a <= start < b for a, b, _ in out):
                continue
            out.append((start, end, text[start:end]))
    return sorted(out)


def _not_a_name(name: str, before: str) -> bool:
    """Generic words, numbers (a staff number is not an institution) and debt words are no name."""
    return (
        not name
        or bool(_GENERIC_NAMES.match(name))
        or digits_of(name).isdigit()
        or before.endswith("号")
        or bool(_DEBT.fullmatch(name))
    )


def find_person(text: str) -> list[tuple[int, str]]:
    """``(position, words)`` where the agent names themself, in text with institutions blanked as ■."""
    out = []
    for pattern in _PERSON_PATTERNS:
        for m in pattern.finditer(text):
            out.append((m.start("who"), m.group(0).strip(",。")))
    return sorted(out)


def scan_turn(text: str) -> dict[str, list[tuple[int, str]]]:
    """Institutions, self-identification and debt words of one agent turn, with positions."""
    orgs = find_institutions(text)
    blanked = list(text)
    for a, b, _ in orgs:
        blanked[a:b] = "■" * (b - a)
    rest = "".join(blanked)
    return {
        "institution": [(a, name) for a, _, name in orgs],
        "person": find_person(rest),
        "debt": [(m.start(), m.group(0)) for m in _DEBT.finditer(rest.replace("■", "#"))],
    }


def _first(items: list[Found]) -> Found | None:
    return min(items, key=Found.key, default=None)


def anonymous_collection(segments: Sequence[Any], meta: CallMetadata, cfg: CallsConfig) -> dict[str, Any]:
    """The check on one call's segments (``speaker``, ``listener``, ``text``), as a flag."""
    if meta.direction == INBOUND:
        return flag(None, "inbound call (the customer called in): not judged")
    agent = [i for i, s in enumerate(segments) if _get(s, "speaker", AGENT) == AGENT]
    if not agent:
        return flag(None, "no agent speech in the call")
    found: dict[str, list[Found]] = {"institution": [], "person": [], "debt": []}
    asked_before = False
    for n, i in enumerate(agent):
        seg = segments[i]
        prev = segments[i - 1] if i > 0 else None
        if prev is not None and _get(prev, "speaker", AGENT) == CUSTOMER:
            asked_before = bool(_WHO_ASKS.search(detector_text(_get(prev, "text", ""))))
        else:
            asked_before = False
        hits = scan_turn(detector_text(_get(seg, "text", "")))
        found["debt"] += [Found(i, at, w) for at, w in hits["debt"]]
        if n >= cfg.identify_within_turns:
            continue
        if asked_before and _get(seg, "listener", "unknown") == THIRD_PARTY:
            continue  # told only to a third party who asked: does not cure it (LABELS.md)
        found["institution"] += [Found(i, at, w) for at, w in hits["institution"]]
        found["person"] += [Found(i, at, w) for at, w in hits["person"]]
    return _decide(found, agent, cfg)


def _decide(found: dict[str, list[Found]], agent: list[int], cfg: CallsConfig) -> dict[str, Any]:
    debt = _first(found["debt"])
    limit = debt.key() if debt else (agent[min(cfg.identify_within_turns, len(agent)) - 1] + 1, 0)
    before = {k: [f for f in found[k] if f.key() < limit] for k in ("institution", "person")}
    org, person = _first(before["institution"]), _first(before["person"])
    evidence = {
        "institution": org.as_dict() if org else None,
        "person": person.as_dict() if person else None,
        "first_debt_talk": debt.as_dict() if debt else None,
        "agent_turns_read": min(cfg.identify_within_turns, len(agent)),
    }
    if org and person:
        return flag(False, "the agent named the institution and themself before talking about the debt", **evidence)
    missing = [name for name, hit in (("the institution", org), ("their own name or staff number", person)) if not hit]
    where = (
        f"before the first debt talk (segment {debt.segment}: {debt.text})"
        if debt
        else f"within the first {evidence['agent_turns_read']} agent turns"
    )
    late = [k for k in ("institution", "person") if not before[k] and found[k]]
    note = f"; said only later: {', '.join(late)}" if late else ""
    return flag(True, f"the agent did not state {' and '.join(missing)} {where}{note}", **evidence)


def _get(segment: Any, name: str, default: Any) -> Any:
    value = segment.get(name) if isinstance(segment, dict) else getattr(segment, name, None)
    return value if value is not None else default
