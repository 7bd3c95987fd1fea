// English and Chinese interface text. The language follows the browser until the user switches it.

const TEXT = {
  en: {
    skip: "Skip to content", nav: "Main", signout: "Sign out", close: "Close", "lang.switch": "切换到中文",
    "lang.other": "中文",
    "tab.kbs": "Knowledge bases", "tab.chat": "Chat", "tab.search": "Search", "tab.reports": "Reports",
    "tab.admin": "People and keys", "tab.api": "API docs",
    "signin.title": "Sign in",
    "signin.hint": "This server needs an API key: your own, from an administrator, or the operator's (RAG_API_KEY).",
    "signin.key": "API key",
    "signin.submit": "Sign in", "signin.wrong": "That key was not accepted. Check it and try again.",
    "kbs.title": "Knowledge bases", "kbs.name": "Name", "kbs.documents": "Documents", "kbs.chunks": "Chunks",
    "kbs.settings": "Settings", "kbs.empty": "No knowledge base yet: create one.",
    "kbs.create": "Create a knowledge base", "kbs.splitter": "Splitter", "kbs.size": "Chunk size",
    "kbs.overlap": "Overlap", "kbs.embedder": "Embedder", "kbs.createButton": "Create", "kbs.open": "Documents",
    "kbs.delete": "Delete", "kbs.confirmDelete": "Delete knowledge base “{name}” with all its documents?",
    "kbs.created": "Knowledge base “{name}” created.", "kbs.deleted": "Knowledge base “{name}” deleted.",
    "kbs.access": "Access", "kbs.emptyReader": "No knowledge base you may use yet: ask an administrator for access.",
    "whoami": "Signed in as {user} ({role})",
    "role.admin": "admin", "role.editor": "editor", "role.reader": "reader",
    "level.read": "read", "level.write": "write", "level.manage": "manage",
    "grants.title": "Who may use", "grants.user": "User", "grants.level": "Access", "grants.since": "Since (UTC)",
    "grants.empty": "No one has been granted access: only administrators can use it.", "grants.add": "Grant access",
    "grants.hint": "Readers can only be granted read; granting again replaces what the user had.",
    "grants.remove": "Remove access", "grants.confirmRemove": "Take {user}'s access to “{kb}” away?",
    "grants.added": "{user} may now {level} “{kb}”.", "grants.removed": "{user} no longer has access to “{kb}”.",
    "users.title": "Users", "users.name": "Name", "users.role": "Role", "users.status": "Status",
    "users.keys": "Working keys", "users.empty": "No users yet: add one.", "users.add": "Add a user",
    "users.addButton": "Add user", "users.active": "active", "users.disabled": "disabled",
    "users.roles": "Readers ask and search the knowledge bases they are granted; editors also create knowledge bases "
      + "and change the ones they are granted write on; admins may do everything.",
    "users.disable": "Disable", "users.enable": "Enable", "users.added": "User {name} added.",
    "users.confirmDisable": "Disable {name}? Their keys stop working until they are enabled again.",
    "keys.title": "Keys", "keys.prefix": "Key", "keys.user": "User", "keys.created": "Created (UTC)",
    "keys.expires": "Expires", "keys.lastUsed": "Last used", "keys.status": "Status", "keys.empty": "No keys yet.",
    "keys.never": "never", "keys.create": "Create a key", "keys.days": "Expires after (days, optional)",
    "keys.createButton": "Create key", "keys.noUsers": "Add a user first: every key belongs to a user.",
    "keys.newFor": "New key for", "keys.theKey": "The new key",
    "keys.once": "Shown only once: copy it now and give it to its owner. The server keeps only a hash and cannot "
      + "show it again.",
    "keys.copy": "Copy", "keys.copied": "Copied.", "keys.copyFailed": "Could not copy: select the key and copy it.",
    "keys.done": "I have copied it", "keys.active": "active", "keys.revoked": "revoked", "keys.expired": "expired",
    "keys.revoke": "Revoke", "keys.confirmRevoke": "Revoke key {prefix} of {user}? It stops working at once.",
    "keys.revokedSay": "Key {prefix} revoked.",
    "audit.title": "Audit trail", "audit.filter": "Actions", "audit.all": "all", "audit.kb": "knowledge bases",
    "audit.document": "documents", "audit.glossary": "glossary", "audit.grant": "grants", "audit.key": "keys",
    "audit.user": "users", "audit.at": "When (UTC)", "audit.actor": "Who", "audit.action": "Action",
    "audit.kbName": "Knowledge base", "audit.target": "Target", "audit.detail": "Detail", "audit.empty": "No events.",
    "docs.title": "Documents of", "docs.drop": "Drop files here, or choose them.", "docs.choose": "Choose files",
    "docs.source": "File", "docs.status": "Status", "docs.size": "Size", "docs.delete": "Delete",
    "docs.confirmDelete": "Delete “{name}” from this knowledge base?", "docs.chars": "{n} chars",
    "docs.pages": "Pages", "docs.ocr": "{n} of {pages} pages read by OCR (text recognised in images)",
    "docs.replace": "Replace it",
    "state.queued": "queued", "state.uploading": "uploading", "state.indexing": "indexing", "state.ready": "ready",
    "state.failed": "failed", "state.pending": "pending",
    "chat.kb": "Knowledge base", "chat.sessions": "Conversations", "chat.new": "New conversation",
    "chat.question": "Question", "chat.placeholder": "Ask about your documents", "chat.ask": "Ask",
    "chat.rename": "Rename", "chat.renamePrompt": "New name for this conversation", "chat.delete": "Delete",
    "chat.confirmDelete": "Delete this conversation?", "chat.you": "You", "chat.answer": "Answer",
    "chat.refusal": "Not in the documents", "chat.related": "Closest passages:", "chat.why": "Why this answer",
    "chat.up": "Helpful", "chat.down": "Not helpful", "chat.comment": "What was wrong? (optional)",
    "chat.thanks": "Thanks: feedback saved.", "chat.thinking": "Reading the documents…",
    "chat.unchecked": "Draft, not checked yet: the checked answer replaces it",
    "chat.unsupported": "unsupported",
    "passage.title": "Passage [{n}]", "passage.page": "page {page}", "passage.ocr": "read by OCR",
    "why.title": "Why this answer", "why.hits": "Retrieved passages", "why.packed": "sent to the model",
    "why.notPacked": "not sent", "why.prompt": "Prompt sent to the model", "why.tokens": "Tokens",
    "why.promptTokens": "prompt {p} · answer {c}", "why.claims": "Checked sentences",
    "search.title": "Search playground", "search.query": "Query", "search.run": "Search",
    "search.none": "No hits.",
    "reports.title": "Evaluation reports", "reports.empty": "No reports found.",
  },
  zh: {
    skip: "跳到正文", nav: "主导航", signout: "退出", close: "关闭", "lang.switch": "Switch to English",
    "lang.other": "English",
    "tab.kbs": "知识库", "tab.chat": "对话", "tab.search": "检索", "tab.reports": "评测报告", "tab.admin": "用户与密钥",
    "tab.api": "API 文档",
    "signin.title": "登录", "signin.hint": "此服务需要 API 密钥：管理员发给你的密钥，或运维方的密钥（RAG_API_KEY）。",
    "signin.key": "API 密钥",
    "signin.submit": "登录", "signin.wrong": "密钥不正确，请检查后重试。",
    "kbs.title": "知识库", "kbs.name": "名称", "kbs.documents": "文档", "kbs.chunks": "分块", "kbs.settings": "设置",
    "kbs.empty": "还没有知识库：先创建一个。", "kbs.create": "创建知识库", "kbs.splitter": "切分方式",
    "kbs.size": "分块大小", "kbs.overlap": "重叠", "kbs.embedder": "向量模型", "kbs.createButton": "创建",
    "kbs.open": "文档", "kbs.delete": "删除", "kbs.confirmDelete": "删除知识库“{name}”及其全部文档？",
    "kbs.created": "已创建知识库“{name}”。", "kbs.deleted": "已删除知识库“{name}”。",
    "kbs.access": "权限", "kbs.emptyReader": "还没有你可以使用的知识库：请向管理员申请权限。",
    "whoami": "当前用户 {user}（{role}）",
    "role.admin": "管理员", "role.editor": "编辑", "role.reader": "读者",
    "level.read": "读取", "level.write": "写入", "level.manage": "管理",
    "grants.title": "谁可以使用", "grants.user": "用户", "grants.level": "权限", "grants.since": "授权时间（UTC）",
    "grants.empty": "还没有授权给任何人：只有管理员可以使用。", "grants.add": "授予权限",
    "grants.hint": "读者只能被授予读取权限；再次授权会替换原有权限。",
    "grants.remove": "收回权限", "grants.confirmRemove": "收回 {user} 对“{kb}”的权限？",
    "grants.added": "{user} 现在对“{kb}”有{level}权限。", "grants.removed": "{user} 已无权使用“{kb}”。",
    "users.title": "用户", "users.name": "名称", "users.role": "角色", "users.status": "状态", "users.keys": "有效密钥",
    "users.empty": "还没有用户：先添加一个。", "users.add": "添加用户", "users.addButton": "添加",
    "users.active": "正常", "users.disabled": "已停用",
    "users.roles": "读者可以在被授权的知识库中提问和检索；编辑还可以创建知识库，并修改被授予写入权限的知识库；管理员可以做所有事。",
    "users.disable": "停用", "users.enable": "启用", "users.added": "已添加用户 {name}。",
    "users.confirmDisable": "停用 {name}？在重新启用之前，其密钥全部失效。",
    "keys.title": "密钥", "keys.prefix": "密钥", "keys.user": "用户", "keys.created": "创建时间（UTC）",
    "keys.expires": "过期时间", "keys.lastUsed": "最近使用", "keys.status": "状态", "keys.empty": "还没有密钥。",
    "keys.never": "永不", "keys.create": "创建密钥", "keys.days": "有效天数（可选）", "keys.createButton": "创建密钥",
    "keys.noUsers": "请先添加用户：每个密钥都属于一个用户。", "keys.newFor": "新密钥，用户：", "keys.theKey": "新密钥",
    "keys.once": "只显示这一次：请立即复制并交给其所有者。服务器只保存哈希值，无法再次显示。",
    "keys.copy": "复制", "keys.copied": "已复制。", "keys.copyFailed": "无法复制：请选中密钥后手动复制。",
    "keys.done": "我已复制", "keys.active": "有效", "keys.revoked": "已吊销", "keys.expired": "已过期",
    "keys.revoke": "吊销", "keys.confirmRevoke": "吊销 {user} 的密钥 {prefix}？它将立即失效。",
    "keys.revokedSay": "密钥 {prefix} 已吊销。",
    "audit.title": "审计日志", "audit.filter": "操作", "audit.all": "全部", "audit.kb": "知识库", "audit.document": "文档",
    "audit.glossary": "术语表", "audit.grant": "授权", "audit.key": "密钥", "audit.user": "用户",
    "audit.at": "时间（UTC）", "audit.actor": "操作者", "audit.action": "操作", "audit.kbName": "知识库",
    "audit.target": "对象", "audit.detail": "详情", "audit.empty": "没有事件。",
    "docs.title": "文档：", "docs.drop": "把文件拖到这里，或选择文件。", "docs.choose": "选择文件",
    "docs.source": "文件", "docs.status": "状态", "docs.size": "大小", "docs.delete": "删除",
    "docs.confirmDelete": "从知识库删除“{name}”？", "docs.chars": "{n} 字",
    "docs.pages": "页数", "docs.ocr": "{pages} 页中有 {n} 页由 OCR 识别（图片中的文字）", "docs.replace": "替换",
    "state.queued": "排队中", "state.uploading": "上传中", "state.indexing": "索引中", "state.ready": "就绪",
    "state.failed": "失败", "state.pending": "处理中",
    "chat.kb": "知识库", "chat.sessions": "会话", "chat.new": "新会话", "chat.question": "问题",
    "chat.placeholder": "就文档提问", "chat.ask": "提问", "chat.rename": "重命名", "chat.renamePrompt": "会话的新名称",
    "chat.delete": "删除", "chat.confirmDelete": "删除这个会话？", "chat.you": "你", "chat.answer": "回答",
    "chat.refusal": "文档中没有答案", "chat.related": "最接近的段落：", "chat.why": "为什么这样回答",
    "chat.up": "有帮助", "chat.down": "没帮助", "chat.comment": "哪里不对？（可选）", "chat.thanks": "谢谢，反馈已保存。",
    "chat.thinking": "正在阅读文档…", "chat.unchecked": "草稿，尚未核对：核对后的回答会替换它", "chat.unsupported": "无依据",
    "passage.title": "段落 [{n}]", "passage.page": "第 {page} 页", "passage.ocr": "OCR 识别",
    "why.title": "为什么这样回答", "why.hits": "检索到的段落", "why.packed": "已发给模型", "why.notPacked": "未发送",
    "why.prompt": "发给模型的提示词", "why.tokens": "词元", "why.promptTokens": "提示 {p} · 回答 {c}",
    "why.claims": "逐句核对",
    "search.title": "检索试验台", "search.query": "查询", "search.run": "检索", "search.none": "没有结果。",
    "reports.title": "评测报告", "reports.empty": "没有找到报告。",
  },
};

const LANG = "rag.lang";
const browser = (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
let current = TEXT[localStorage.getItem(LANG)] ? localStorage.getItem(LANG) : browser;

export const lang = () => current;

export function t(key, vars = {}) {
  const text = TEXT[current][key] ?? TEXT.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

export function setLang(next) {
  current = next;
  localStorage.setItem(LANG, next);
  apply(document);
}

export function apply(root) {
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
}
