"""What collectors say and what the people they call say: the cues of automatic role assignment.

Each cue is a regular expression over the normalised text (simplified characters, half-width
punctuation) and a weight: positive for the collector (names the institution, asks about the
person's identity and debt, asks for repayment, states consequences, uses service formulae),
negative for the person called (answers the phone, asks who is calling, pleads, promises,
complains, says they are someone else). A cue counts once per segment. Written from how
collection calls go, before the evaluation calls (data/roles) were; see roles_eval for the numbers.
"""

from __future__ import annotations

import re

_ORG = (
    r"(金融|银行|信用卡|贷|借|花|平台|公司|中心|律师|律所|事务所|催收|法务|客服|资产|分期|钱包|白条|专员|工作人员"
    r"|部门|调解)"
)
_STOP = r"[^,.?!;，。？！；]"

AGENT_CUES: tuple[tuple[str, float], ...] = (
    (rf"我(是|这边是|们是|们这边是|这里是){_STOP}{{0,14}}{_ORG}", 3.0),
    (rf"(这边|这里)是{_STOP}{{0,12}}{_ORG}", 3.0),
    (r"(工作人员|专员|客服|贷后|催收部|法务部|调解中心|资产管理|风控部)", 1.0),
    (rf"(请问|您|你)(是|就是){_STOP}{{1,8}}(先生|女士|小姐|本人|吗)", 2.0),
    (rf"是{_STOP}{{1,6}}本人(吗|嘛|吧)", 2.0),
    (r"(核实|确认)(一下)?(您|你)?的?(身份|信息)", 2.0),
    (
        rf"(您|你)(的|在我们|在我司|这边|名下|那笔|这笔){_STOP}{{0,8}}(账单|借款|欠款|贷款|信用卡|分期|款项|账户|额度|逾期|车贷)",
        2.0,
    ),
    (rf"(您|你){_STOP}{{0,6}}(已经|目前)?逾期", 1.5),
    (
        rf"(请|麻烦)?(您|你){_STOP}{{0,8}}(今天|明天|尽快|马上|抓紧|务必|按时|几点|什么时候|多久|哪天|几号)"
        rf"{_STOP}{{0,6}}(还|处理|结清|存|转|打款|入账)",
        2.5,
    ),
    (r"(最低还款|应还|还款金额|欠款金额|罚息|滞纳金|违约金|结清|全额)", 0.7),
    (r"(您|你)的征信|(上报|影响|记录|录入)(到)?(您|你)?的?(个人)?征信", 1.5),
    (r"(起诉|立案|法院|仲裁|律师函|司法|法律程序|法律责任|上门|外访|走访|紧急联系人|通讯录)", 0.8),
    (rf"(麻烦|请)(您|你){_STOP}{{0,6}}(转告|告诉|通知|提醒|让他|让她|叫他|叫她)", 3.0),
    (r"(让|叫|请)(他|她){_STOP}{{0,6}}(回电|回个电话|联系我们|联系一下我们|尽快处理)", 2.0),
    (
        r"(打扰(您)?了|感谢(您的)?(接听|配合|理解|支持)|祝您|保持电话畅通|本次通话|通话(将被|会被|全程)?录音|给您来电|致电|来电是)",
        2.0,
    ),
    (r"(帮您|给您|为您|替您)", 1.5),
    (r"我们(公司|平台|这边|银行|机构|中心)", 1.5),
    (r"(还款计划|协商还款|减免(方案|政策)|回款|催款|申请减免)", 1.0),
    (r"您", 0.4),
    # Added after the first measurement, from the development half's misses (see roles_eval):
    (r"(你|您)(的|这个|那个)(案子|限高|账|欠款|借款|贷款|车|房子|征信|律师函|情况|账户|还款)", 1.5),
    (r"(我们|我)(会|就|要|马上|明天|今天|已经|直接)?(派人)?(去|上|到)(你|您)(家|单位|公司|村|学校|店|老家)", 2.0),
    (r"你这种(人|老赖)|老赖|不要脸|没出息|装死|垃圾|狗东西|德行|别怪我|你(自己)?看着办", 1.5),
)

CUSTOMER_CUES: tuple[tuple[str, float], ...] = (
    (r"^(喂|哎|诶|嗯)[,.?!，。？！\s]*(你好|您好)?[,.?!，。？！\s]*$", 1.5),
    (r"(你|您)是(哪位|谁|哪里|哪个|什么人)|哪位(啊|呀)?|谁(啊|呀)|你们是(哪|什么)|(什么|啥)事", 2.0),
    (r"我(现在|真的|确实|实在|最近|这个月|目前)?(没钱|没有钱|还不起|还不上|拿不出|手头紧|失业|住院|生病|没工作)", 2.5),
    (
        rf"我(下个月|过几天|月底|发工资|这周|这个月|明天|后天|尽量|会|一定|争取|马上|肯定){_STOP}{{0,6}}(还|处理|凑|转)",
        2.5,
    ),
    (rf"(能不能|可不可以|能否|可以){_STOP}{{0,6}}(宽限|分期|减免|少还|延期|晚几天|缓几天|免息|停催|先还一部分)", 1.5),
    (
        r"(别|不要|不许|少)(再)?(给我|给我家人|给他)?(打|骚扰|催|烦)|天天打|一直打|烦不烦|烦死|我要投诉|投诉你们|报警|骗子|滚",
        2.5,
    ),
    (
        r"我(是|就是)?(他|她)的?(妈|爸|父亲|母亲|老婆|老公|妻子|丈夫|爱人|同事|朋友|室友|领导|老板|姐|哥|弟|妹|儿子|女儿|邻居|房东|家人|亲戚)",
        3.0,
    ),
    (
        r"我不认识(他|她|这个人|这人)|打错了|(他|她)(现在)?不在|(他|她)(已经)?(不在|离职|走了|搬走)|我会转告|我帮你(转告|告诉|说)|我跟(他|她)说|我让(他|她)",
        3.0,
    ),
    (rf"(你们|你)(怎么|凭什么|为什么|有什么权利){_STOP}{{0,10}}", 1.0),
    (r"^(好的?|嗯+|行|知道了|哦+|噢|对|是的?|明白)[,.?!，。？！\s]*(好的?|知道了|行|嗯)?[,.?!，。？！\s]*$", 0.7),
    (rf"我(借|欠|的欠款|的借款|那笔|的账|的贷款|逾期){_STOP}{{0,6}}", 1.5),
    (r"(利息|收费)(太|这么|也太)(高|多|贵)|砍头息|高利贷|套路贷|暴力催收", 2.0),
    (r"我没(借|欠)|不是我借的|我没有借|我不知道(这|什么)", 2.5),
    # Added after the first measurement, from the development half's misses (see roles_eval):
    (r"你们(说|是|公司|平台|银行|那个|的人|同事|这|能不能|别|不要|寄|给我|打|到底|怎么|凭什么|昨天|上次|之前)", 1.5),
    (rf"(会|能|可以|是不是|是真的|算不算|至于){_STOP}{{0,10}}(吗|嘛|么)$", 1.0),
    (rf"你(是|们是){_STOP}{{0,8}}的(吧|吗)", 2.5),
    (rf"先还{_STOP}{{0,8}}(行不行|可以吗|行吗|好不好)", 2.0),
    (r"我(的)?(这个月)?的?(账单|欠款|借款|贷款|卡|家|单位|老家|爸妈|父母|孩子|老婆|老公|工资)", 1.0),
)

AGENT = tuple((re.compile(p), w) for p, w in AGENT_CUES)
CUSTOMER = tuple((re.compile(p), w) for p, w in CUSTOMER_CUES)


PRONOUNS = ((re.compile(r"[你您](?!们)"), 0.3), (re.compile(r"我(?!们)"), -0.3), (re.compile(r"你们"), -0.6))
PRONOUN_CAP = 3  # occurrences counted per pronoun and segment: a long turn must not win on length alone


def segment_score(text: str) -> float:
    """Agent-likeness of one normalised segment: agent cue weights minus customer cue weights,
    plus who it addresses (collectors say 你/您 about the debt; the called say 我 and 你们)."""
    score = sum(w for p, w in AGENT if p.search(text)) - sum(w for p, w in CUSTOMER if p.search(text))
    return score + sum(w * min(len(p.findall(text)), PRONOUN_CAP) for p, w in PRONOUNS)
