"""Text as the call-level detectors read it: the model's normalisation plus ASR repairs.

:func:`model.preprocess.normalize` already folds full-width and traditional characters, case,
spacing and repeated fillers, and maps placeholders and masks to 某 (a name stand-in, which the
detectors accept as a name). On top, the detectors undo the near-homophones ASR produces in the
words they look for (公号 → 工号, 头诉 → 投诉) and drop single fillers, so a rule is written
once against clean text.
"""

from __future__ import annotations

import re
from functools import lru_cache

from model.preprocess import normalize

#: ASR near-homophones of the words the detectors look for → the word.
ASR_REPAIRS: dict[str, str] = {
    "公号": "工号", "攻号": "工号", "宫号": "工号", "工好": "工号", "功号": "工号",
    "头诉": "投诉", "投素": "投诉", "偷诉": "投诉", "投述": "投诉",
    "举包": "举报", "巨报": "举报", "报井": "报警", "抱警": "报警",
    "经融": "金融", "金荣": "金融", "银航": "银行", "因行": "银行",
    "消费经融": "消费金融", "小代": "小贷", "律所": "律师事务所", "预期": "逾期",
    "骚绕": "骚扰", "扫扰": "骚扰", "消协会": "消协", "监官局": "监管局",
}  # fmt: skip
_REPAIR = re.compile("|".join(sorted(map(re.escape, ASR_REPAIRS), key=len, reverse=True)))
_FILLER = re.compile(r"(?<![一-龥])[嗯呃唉哎](?=[一-龥,。])|(?<=[,。])[嗯呃啊哦](?=[一-龥])|^[嗯呃啊哦哎唉]+[,]?")
_CN_DIGITS = str.maketrans("零〇一二三四五六七八九幺两", "0012345678912")


@lru_cache(maxsize=4096)
def detector_text(text: str) -> str:
    """Normalised text with ASR repairs; empty when the text normalises to nothing."""
    try:
        out = normalize(text)
    except ValueError:
        return ""
    out = _REPAIR.sub(lambda m: ASR_REPAIRS[m.group(0)], out)
    return _FILLER.sub("", out)


def digits_of(text: str) -> str:
    """Chinese numerals as digits (for staff numbers read out as 幺三五七)."""
    return text.translate(_CN_DIGITS)
