"""The console's own words in Chinese; English is the key. The page's language is the browser's
(``Accept-Language``, Chinese by default), as for the reasons and the factors it shows. A text
missing here shows in English (a test keeps every template text translated)."""

from __future__ import annotations

from collections.abc import Callable

ZH = {
    # frame
    "Review console": "人工审核台", "Find a decision": "查询决定", "Signed in as": "当前用户",
    "Sign out": "退出", "Sign in": "登录", "Reviewer key": "审核员密钥",
    "Use your reviewer key. It is checked once and never stored in the browser: the session lasts a "
    "working day (8 hours) and ends when you sign out or the key is rotated.":
        "请使用您的审核员密钥登录。密钥只校验一次，不会保存在浏览器中；会话有效期为一个工作日（8 小时），"
        "退出或密钥轮换后失效。",
    "This is not a valid reviewer key.": "这不是有效的审核员密钥。",
    "No such case": "没有该案件", "Back to the queue": "返回队列",
    # queue
    "Queue": "审核队列", "earliest deadline first": "按截止时间排序", "State": "状态",
    "every undecided": "全部未决", "Product": "产品", "every product": "全部产品", "Filter": "筛选",
    "Refresh": "刷新", "Time left": "剩余时间", "Priority": "优先级", "Case": "案件", "Amount": "金额",
    "Held by": "处理人", "Due (Beijing)": "截止（北京时间）", "proposed by": "提议人", "Next page": "下一页",
    "No case waits for a review.": "暂无待审核案件。", "SLA breached": "已超时",
    "normal": "普通", "high": "较高", "urgent": "紧急",
    "open": "待领取", "claimed": "处理中", "awaiting_confirmation": "待复核", "confirming": "复核中",
    "decided": "已决定",
    # case
    "← Queue": "← 审核队列", "Why a person": "人工审核原因", "automation referred it": "系统转人工",
    "the applicant asked for a review of an automatic decision": "申请人要求人工复核自动决定",
    "the applicant refused an automated decision": "申请人拒绝仅由自动化作出决定",
    "Applicant's reason": "申请人理由", "Automatic outcome": "自动决定", "due": "截止", "nobody": "无人",
    "until": "至", "Application": "申请", "decision": "决定", "months": "个月", "Work the case": "处理案件",
    "Claim": "领取", "Claim to confirm or reject": "领取并复核",
    "You proposed this approval: a second reviewer must confirm it.": "您提议了本次批准，须由另一名审核员复核。",
    "holds this case.": "正在处理该案件。", "Decision": "决定", "Approve": "批准", "Decline": "拒绝",
    "If approved": "如批准", "If declined": "如拒绝", "Reason": "原因", "Amount (CNY)": "金额（元）",
    "Term": "期限", "Rate tier": "利率档", "Above {amount} CNY a second reviewer confirms.":
        "金额超过 {amount} 元须由第二名审核员复核。",
    "Note for the audit": "审计备注",
    "What you checked and found (ID numbers and phones are masked)": "核实内容与结果（身份证号与手机号会被脱敏）",
    "Record decision": "提交决定", "proposes to approve": "提议批准", "CNY over": "元，期限",
    "at tier": "，利率档", "Note (optional)": "备注（可选）", "Confirm approval": "确认批准",
    "Why not (required)": "驳回理由（必填）", "Reject": "驳回", "Release to the queue": "放回队列",
    "Renew my claim": "续期领取", "Decided": "已决定", "by": "决定人",
    "Applicant": "申请人", "personal data masked": "个人信息已脱敏", "Name": "姓名", "ID number": "身份证号",
    "Phone": "手机号", "Age": "年龄", "Occupation": "职业", "Monthly income": "月收入",
    "Years in work": "工作年限", "Housing": "住房", "years": "年", "Dependents": "供养人数", "Loan": "贷款",
    "Purpose": "用途", "Channel": "渠道", "Submitted": "提交时间", "Business": "经营主体", "Whitelist": "白名单",
    "Why it is here": "转人工原因", "No reason given.": "无原因。", "Flags": "标记",
    "Provider results": "外部核验结果", "no provider answered": "无核验结果", "Score": "评分", "Grade": "等级",
    "points": "分", "Not scored.": "未评分。", "What lowered the score": "拉低评分的因素", "Input": "因素",
    "Best": "最佳值", "Points": "分值",
    "against the reference applicant's {points} points (every input at its best).":
        "参照申请人（各因素取最佳值）为 {points} 分。",
    "Rule trace": "规则轨迹", "skipped": "已跳过", "Rule": "规则", "Result": "结果", "Read": "读取的值",
    "Strategy row": "策略行", "Audit history": "审计记录", "When (Beijing)": "时间（北京时间）", "Who": "操作人",
    "What": "操作", "From → to": "状态变化", "Note": "备注",
    # find a decision
    "Decision id or the bank's application id": "决定编号或银行申请编号", "Find": "查询",
    "No decision with that id.": "没有该编号的决定。", "Outcome": "结果", "decided by": "决定方",
    "automation": "自动化", "person": "人工", "at": "于", "Versions": "版本", "Review": "人工审核",
    "none; the applicant may ask for one until": "无；申请人可在以下时间前要求人工复核：", "none": "无",
    "Reasons, as the applicant is told": "告知申请人的原因", "None: approved.": "无：已批准。",
    "Nothing: every input was at its best.": "无：各因素均为最佳值。",
    "points against the reference applicant's": "分，参照申请人为", "Rules that fired": "触发的规则",
    "Stage": "阶段", "The applicant asks for a person to decide": "申请人要求人工决定",
    "The applicant's reason": "申请人理由", "Open a review": "发起人工复核",
    # what the console says after a form
    "The review is opened: the case is in the queue.": "已发起人工复核，案件已进入队列。",
    "You hold the case.": "您已领取该案件。", "The case is back in the queue.": "案件已放回队列。",
    "Your decision is recorded.": "您的决定已记录。",
    "Your approval waits for a second reviewer.": "您的批准等待第二名审核员复核。",
    "The approval is confirmed: the decision is final.": "批准已确认，决定已生效。",
    "The approval was rejected: the case is back for a first review.": "批准已被驳回，案件退回初审。",
    "the form came from another site": "表单来自其他网站", "sign in from the console's own page": "请从审核台页面登录",
    "the form has expired: reload the page and try again": "表单已过期，请刷新页面后重试",
    "forms are sent as application/x-www-form-urlencoded": "表单格式不正确", "the form is too large": "表单过大",
    "the form could not be read": "无法读取表单", "say why the approval is rejected": "请填写驳回理由",
    "choose approve or decline": "请选择批准或拒绝",
    "a decision needs a note (kept in the case's audit)": "请填写审计备注",
    "an approval needs an amount and a term": "批准需填写金额和期限", "the amount must be a number": "金额须为数字",
    "give the applicant's reason (up to 1000 characters)": "请填写申请人理由（最多 1000 字）",
    "no decision with that id": "没有该编号的决定", "no such action": "无此操作",
    "unknown state": "未知状态", "stale page link": "页面链接已失效",
}


def translator(language: str) -> Callable[[str], str]:
    """``_(text)`` for a page in ``language``: the Chinese text, or the English key itself."""
    if language != "zh":
        return lambda text: text
    return lambda text: ZH.get(text, text)
