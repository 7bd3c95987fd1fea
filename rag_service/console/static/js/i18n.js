// English and Chinese interface text. The language follows the browser until the user switches it.

const TEXT = {
  en: {
    skip: "Skip to content", nav: "Main", signout: "Sign out", close: "Close", "lang.switch": "切换到中文",
    "lang.other": "中文",
    "tab.kbs": "Knowledge bases", "tab.chat": "Chat", "tab.search": "Search", "tab.reports": "Reports",
    "tab.api": "API docs",
    "signin.title": "Sign in", "signin.hint": "This server needs an API key (RAG_API_KEY).", "signin.key": "API key",
    "signin.submit": "Sign in", "signin.wrong": "That key was not accepted. Check it and try again.",
    "kbs.title": "Knowledge bases", "kbs.name": "Name", "kbs.documents": "Documents", "kbs.chunks": "Chunks",
    "kbs.settings": "Settings", "kbs.empty": "No knowledge base yet: create one.",
    "kbs.create": "Create a knowledge base", "kbs.splitter": "Splitter", "kbs.size": "Chunk size",
    "kbs.overlap": "Overlap", "kbs.embedder": "Embedder", "kbs.createButton": "Create", "kbs.open": "Documents",
    "kbs.delete": "Delete", "kbs.confirmDelete": "Delete knowledge base “{name}” with all its documents?",
    "kbs.created": "Knowledge base “{name}” created.", "kbs.deleted": "Knowledge base “{name}” deleted.",
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
    "tab.kbs": "知识库", "tab.chat": "对话", "tab.search": "检索", "tab.reports": "评测报告", "tab.api": "API 文档",
    "signin.title": "登录", "signin.hint": "此服务需要 API 密钥（RAG_API_KEY）。", "signin.key": "API 密钥",
    "signin.submit": "登录", "signin.wrong": "密钥不正确，请检查后重试。",
    "kbs.title": "知识库", "kbs.name": "名称", "kbs.documents": "文档", "kbs.chunks": "分块", "kbs.settings": "设置",
    "kbs.empty": "还没有知识库：先创建一个。", "kbs.create": "创建知识库", "kbs.splitter": "切分方式",
    "kbs.size": "分块大小", "kbs.overlap": "重叠", "kbs.embedder": "向量模型", "kbs.createButton": "创建",
    "kbs.open": "文档", "kbs.delete": "删除", "kbs.confirmDelete": "删除知识库“{name}”及其全部文档？",
    "kbs.created": "已创建知识库“{name}”。", "kbs.deleted": "已删除知识库“{name}”。",
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
