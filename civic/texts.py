"""Every text residents read from the twin, in Simplified Chinese (the default) and English.

One place, so that the i18n module (``geo/i18n.py``, Babel catalogues) can take them over as
message ids: ``text(key, lang)`` is the one accessor.
"""

from __future__ import annotations

LANGS = ("zh", "en")
DEFAULT_LANG = "zh"

TEXTS: dict[str, dict[str, str]] = {
    "report.title": {"zh": "报告问题", "en": "Report a problem"},
    "report.intro": {"zh": "看到路灯坏了、路面塌陷、井盖缺失、垃圾乱倒？告诉我们在哪里，"
                               "附上照片和说明。无需注册。",
                     "en": "A broken streetlight, a collapsed road, a missing manhole cover, "
                           "dumped rubbish? Tell us where, with a photo and a few words. "
                           "No account needed."},
    "report.where": {"zh": "在哪里", "en": "Where"},
    "report.pin": {"zh": "在地图上点一下放置位置", "en": "Tap the map to place a pin"},
    "report.or_building": {"zh": "或者选择我的小区", "en": "or choose my compound"},
    "report.choose": {"zh": "（选择小区）", "en": "(choose a compound)"},
    "report.what": {"zh": "发生了什么", "en": "What is wrong"},
    "report.placeholder": {"zh": "例如：2号门外的路灯坏了，晚上很黑",
                           "en": "e.g. the streetlight outside gate 2 is broken"},
    "report.photo": {"zh": "照片（可选，JPEG/PNG/WebP，最大 5 MB）",
                     "en": "Photo (optional, JPEG/PNG/WebP, at most 5 MB)"},
    "report.send": {"zh": "提交", "en": "Send"},
    "report.sent": {"zh": "已收到。请保存您的查询码：", "en": "Received. Keep your token:"},
    "report.follow": {"zh": "查看处理进度", "en": "Follow its progress"},
    "report.other_lang": {"zh": "English", "en": "中文"},
    "report.need_place": {"zh": "请在地图上放置位置或选择小区。",
                          "en": "Place a pin on the map or choose a compound."},
    "status.title": {"zh": "诉求进度", "en": "Your request"},
    "status.status": {"zh": "状态", "en": "Status"},
    "status.open": {"zh": "处理中", "en": "Open"},
    "status.closed": {"zh": "已办结", "en": "Closed"},
    "status.matter": {"zh": "类别", "en": "Kind"},
    "status.party": {"zh": "责任方", "en": "Responsible"},
    "status.supporters": {"zh": "附议人数", "en": "Supporters"},
    "status.expected": {"zh": "预计办结", "en": "Expected by"},
    "status.history": {"zh": "进展与回复", "en": "Progress and replies"},
    "status.reply": {"zh": "回复", "en": "Reply"},
    "status.change": {"zh": "状态变更", "en": "Status"},
    "status.joined": {"zh": "同一问题已有人报告，您的报告已作为附议（+1）加入。",
                      "en": "Someone reported this already; your report joined it (+1)."},
    "matter.big": {"zh": "大事（政府部门办理）", "en": "Big matter (a government department)"},
    "matter.small": {"zh": "小事（社区协同办理）", "en": "Small matter (the community)"},
    "matter.private": {"zh": "私事（居民自行解决）", "en": "Private matter (residents themselves)"},
    "council.title": {"zh": "三事清单", "en": "The councils' living list"},
    "council.intro": {"zh": "按小区和责任方汇总的居民诉求，供楼栋、院落、社区议事会使用。",
                      "en": "Residents' requests by compound and responsible party, for the "
                            "building, group and community councils."},
    "council.compound": {"zh": "小区", "en": "Compound"},
    "council.party": {"zh": "责任方", "en": "Responsible party"},
    "council.matter": {"zh": "类别", "en": "Matter"},
    "council.status": {"zh": "状态", "en": "Status"},
    "council.count": {"zh": "件数", "en": "Requests"},
    "council.supporters": {"zh": "附议", "en": "Supporters"},
    "council.oldest": {"zh": "最久（天）", "en": "Oldest (days)"},
    "council.overdue": {"zh": "超期", "en": "Overdue"},
    "council.none": {"zh": "（无小区）", "en": "(no compound)"},
    "council.empty": {"zh": "暂无诉求。", "en": "No requests."},
    "council.items": {"zh": "诉求明细", "en": "The requests"},
    "chat.new": {"zh": "收到！已登记为{matter}，编号 {id}，由{party}处理，"
                       "预计 {expected} 前答复。查看进度：{url}",
                 "en": "Received as a {matter}, number {id}, for {party}; an answer is "
                       "expected by {expected}. Progress: {url}"},
    "chat.plus_one": {"zh": "这个问题已在处理中（编号 {id}），已为您 +1，"
                            "目前共 {supporters} 人附议。",
                      "en": "This is being handled already (number {id}); your +1 is "
                            "counted, {supporters} supporters now."},
    "chat.private": {"zh": "这属于私事（{id}），建议自行联系维修服务，居委会可帮忙推荐。",
                     "en": "This is a private matter ({id}): please call a repair service; "
                           "the residents' committee can suggest one."},
    "chat.no_group": {"zh": "这个群还没有绑定小区，请联系社区工作人员。",
                      "en": "This group is not linked to a compound yet; ask the community "
                            "staff."},
}


def text(key: str, lang: str = DEFAULT_LANG) -> str:
    """A resident-facing text in ``lang`` (Chinese when the language is not offered)."""
    entry = TEXTS[key]
    return entry.get(lang) or entry[DEFAULT_LANG]


def pick_lang(asked: str | None, accept_language: str | None = None) -> str:
    """The language to answer in: ``?lang=`` if offered, else Chinese.

    >>> pick_lang("en"), pick_lang(None), pick_lang("fr")
    ('en', 'zh', 'zh')
    """
    return asked if asked in LANGS else DEFAULT_LANG
