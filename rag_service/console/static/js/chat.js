// Chat: streamed answers with citation chips, refusals with their related passages, "why this answer",
// feedback, and the knowledge base's conversations in a sidebar.

import { api, enc, postEvents } from "./api.js";
import { fail } from "./app.js";
import { t } from "./i18n.js";
import { $, el } from "./dom.js";

let sessionId = null;

const kb = () => $("chat-kb").value;

export async function show() {
  await showSessions();
}

export function reset() {
  sessionId = null;
  $("messages").replaceChildren();
  $("session-list").replaceChildren();
  $("question").value = "";
  closeSide();
}

async function showSessions() {
  if (!kb()) return $("session-list").replaceChildren();
  const { sessions } = await api(`/v1/sessions?kb=${enc(kb())}`);
  $("session-list").replaceChildren(...sessions.map((s) => {
    const open = el("button", { type: "button", className: "open", textContent: s.title || s.created, title: s.title });
    open.addEventListener("click", () => openSession(s.id));
    const rename = el("button", { type: "button", className: "link", textContent: "✎" });
    rename.setAttribute("aria-label", `${t("chat.rename")} ${s.title}`);
    rename.addEventListener("click", () => renameSession(s));
    const remove = el("button", { type: "button", className: "link", textContent: "×" });
    remove.setAttribute("aria-label", `${t("chat.delete")} ${s.title}`);
    remove.addEventListener("click", () => deleteSession(s.id));
    const li = el("li", {}, open, rename, remove);
    li.dataset.session = s.id;
    if (s.id === sessionId) li.classList.add("current");
    return li;
  }));
}

async function openSession(id) {
  const session = await api(`/v1/sessions/${enc(id)}`);
  sessionId = id;
  let question = "";
  $("messages").replaceChildren(...session.messages.map((m) => {
    if (m.role === "user") {
      question = m.content;
      return userMessage(m.content);
    }
    return restoredAnswer(question, m, id);
  }));
  closeSide();
  await showSessions();
  $("question").focus();
}

async function renameSession(session) {
  const title = prompt(t("chat.renamePrompt"), session.title);
  if (!title) return;
  try {
    await api(`/v1/sessions/${enc(session.id)}`, { method: "PATCH", json: { title } });
    await showSessions();
  } catch (error) {
    fail(error);
  }
}

async function deleteSession(id) {
  if (!confirm(t("chat.confirmDelete"))) return;
  try {
    await api(`/v1/sessions/${enc(id)}`, { method: "DELETE" });
    if (id === sessionId) newSession();
    await showSessions();
  } catch (error) {
    fail(error);
  }
}

function newSession() {
  sessionId = null;
  $("messages").replaceChildren();
  closeSide();
  showSessions().catch(fail);
  $("question").focus();
}

// A stored answer as the live one rendered it (chips, a refusal's related passages), from the evidence the session
// kept beside its text; one written before evidence was kept is plain text.
function restoredAnswer(question, m, id) {
  if (m.citations == null) {
    return el("li", { className: "msg answer" }, el("div", { className: "label", textContent: t("chat.answer") }),
      el("div", { className: "text", textContent: m.content }));
  }
  return answerMessage(question, { answer: m.content, citations: m.citations, claims: m.claims ?? [],
    refused: Boolean(m.refused), grounded: Boolean(m.grounded), related: m.related ?? [], policy: m.policy,
    usage: m.usage, session_id: id });
}

function userMessage(text) {
  return el("li", { className: "msg user" }, el("div", { className: "label", textContent: t("chat.you") }),
    el("div", { className: "text", textContent: text }));
}

// -- asking ---------------------------------------------------------------------------------------------------
async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || !kb()) return;
  $("question").value = "";
  $("ask").disabled = true;
  $("messages").append(userMessage(question));
  const text = el("div", { className: "text", textContent: "" });
  const label = el("div", { className: "label", textContent: t("chat.thinking") });
  const draft = el("li", { className: "msg answer draft" }, label, text);
  $("messages").append(draft);
  draft.scrollIntoView({ block: "end" });
  try {
    for await (const { event: name, data } of postEvents(`/v1/kbs/${enc(kb())}/chat`,
      { question, session_id: sessionId, stream: true, explain: true })) {
      if (name === "token") {
        label.textContent = t("chat.unchecked"); // the server's checks may still withdraw it (see "done")
        text.textContent += data.text;
      }
      else if (name === "done") {
        sessionId = data.session_id ?? sessionId;
        draft.replaceWith(answerMessage(question, data));
      } else if (name === "error") throw new Error(data.detail);
    }
    await showSessions();
  } catch (error) {
    draft.remove();
    fail(error);
  } finally {
    $("ask").disabled = false;
    $("question").focus();
  }
}

// The checked answer: markers become chips that open their passage; a refusal looks different and lists the
// closest passages instead.
function answerMessage(question, answer) {
  const li = el("li", { className: `msg ${answer.refused ? "refusal" : "answer"}` });
  li.dataset.refused = String(answer.refused);
  li.append(el("div", { className: "label", textContent: answer.refused ? t("chat.refusal") : t("chat.answer") }));
  const body = el("div", { className: "text" });
  const parts = answer.refused ? [answer.answer] : answer.answer.split(/(\[\d+\])/);
  for (const part of parts) {
    const marker = /^\[(\d+)\]$/.exec(part);
    const cited = marker && answer.citations.find((c) => c.n === Number(marker[1]));
    if (cited) {
      const chip = el("button", { type: "button", className: "chip", textContent: cited.n });
      chip.setAttribute("aria-label", `${t("passage.title", { n: cited.n })}: ${cited.source}`);
      chip.addEventListener("click", () => openPassage(answer, cited));
      body.append(chip);
    } else body.append(part);
  }
  li.append(body);
  if (answer.refused && answer.related.length) {
    li.append(el("div", { className: "muted", textContent: t("chat.related") }), el("ol", { className: "related" },
      ...answer.related.map((hit, i) => {
        const line = `${hit.source}: ${hit.text.slice(0, 90)}…`;
        const open = el("button", { type: "button", className: "link", textContent: line, title: line });
        open.addEventListener("click", () => openPassage(answer, { ...hit, n: i + 1 }, true));
        return el("li", {}, open);
      })));
  }
  li.append(meta(question, answer));
  return li;
}

function meta(question, answer) {
  const why = el("button", { type: "button", className: "secondary", textContent: t("chat.why") });
  why.addEventListener("click", () => openWhy(answer));
  const box = el("span", { className: "meta" }, why);
  const form = el("form", { className: "meta feedback", hidden: true });
  const comment = el("input", { placeholder: t("chat.comment") });
  comment.setAttribute("aria-label", t("chat.comment"));
  const send = el("button", { type: "submit", textContent: "✓" });
  send.setAttribute("aria-label", "Send");
  form.append(comment, send);
  let rating = null;
  for (const [value, label] of [["up", t("chat.up")], ["down", t("chat.down")]]) {
    const thumb = el("button", { type: "button", className: "secondary", textContent: label });
    thumb.setAttribute("aria-pressed", "false");
    thumb.addEventListener("click", () => {
      rating = value;
      for (const b of box.querySelectorAll("[aria-pressed]")) b.setAttribute("aria-pressed", String(b === thumb));
      form.hidden = false;
      comment.focus();
    });
    box.append(thumb);
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/v1/feedback", { method: "POST", json: {
        kb: kb(), question, answer: answer.answer, rating, comment: comment.value.trim() || null,
        session_id: answer.session_id ?? null,
        citations: answer.citations.map(({ n, chunk_id, doc_id, source }) => ({ n, chunk_id, doc_id, source })),
      } });
      form.replaceChildren(el("span", { className: "muted", textContent: t("chat.thanks") }));
    } catch (error) {
      fail(error);
    }
  });
  return el("div", {}, box, form);
}

// -- the side panel: a passage, or why this answer ---------------------------------------------------------
function openSide(title, ...content) {
  $("side-title").textContent = title;
  $("side-body").replaceChildren(...content);
  $("side").hidden = false;
  $("view-chat").classList.add("with-side");
  $("side-close").focus();
}

function closeSide() {
  $("side").hidden = true;
  $("view-chat").classList.remove("with-side");
}

// The passage with the sentence the answer relies on highlighted (the claim checks' evidence for this marker).
function openPassage(answer, passage, related = false) {
  const text = passage.text;
  const evidence = related ? [] : answer.claims.filter((c) => c.citations.includes(passage.n) && c.evidence)
    .map((c) => c.evidence).filter((e) => text.includes(e));
  const body = el("div", { className: "passage" });
  let rest = text;
  for (const span of evidence) {
    const at = rest.indexOf(span);
    if (at < 0) continue;
    body.append(rest.slice(0, at), el("mark", { textContent: span }));
    rest = rest.slice(at + span.length);
  }
  body.append(rest);
  const where = (passage.page ? ` · ${t("passage.page", { page: passage.page })}` : "")
    + (passage.ocr ? ` · ${t("passage.ocr")}` : "");
  openSide(t("passage.title", { n: passage.n }), el("p", { className: "muted", textContent: passage.source + where }), body);
}

function openWhy(answer) {
  const trace = answer.trace || {};
  const packed = new Set(trace.packed || []);
  const hits = (trace.hits || []).map((hit) => {
    const scores = [];
    for (const name of ["bm25", "vector"]) {
      if (hit.ranks?.[name]) scores.push(`${name} #${hit.ranks[name]} (${Number(hit.scores[name]).toFixed(3)})`);
    }
    scores.push(`fused ${Number(hit.score).toFixed(4)}`);
    return el("div", { className: "hit" },
      el("strong", { textContent: hit.source }), " ",
      el("span", { className: packed.has(hit.chunk_id) ? "state-ready" : "muted",
        textContent: packed.has(hit.chunk_id) ? t("why.packed") : t("why.notPacked") }),
      el("div", { className: "scores", textContent: scores.join(" · ") }),
      el("div", { textContent: hit.text.slice(0, 160) }));
  });
  const prompt = (trace.messages || []).map((m) => `── ${m.role} ──\n${m.content}`).join("\n\n");
  const claims = answer.claims.map((c) => el("li", {
    textContent: `${c.supported ? "✓" : "✗"} ${c.text}${c.reason ? ` (${c.reason})` : ""}` }));
  // A reopened answer has its tokens and claims but no trace (the hits and the prompt are not kept).
  const usage = answer.usage ? [el("h3", { textContent: t("why.tokens") }),
    el("p", { className: "tokens", textContent: t("why.promptTokens", { p: answer.usage.prompt_tokens, c: answer.usage.completion_tokens }) })] : [];
  openSide(t("why.title"), ...usage,
    ...(answer.trace ? [el("h3", { textContent: t("why.hits") }), ...hits] : []),
    el("h3", { textContent: t("why.claims") }), el("ul", {}, ...claims),
    ...(answer.trace ? [el("h3", { textContent: t("why.prompt") }), el("pre", { className: "prompt", textContent: prompt })] : []));
}

export function wire() {
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  $("new-session").addEventListener("click", newSession);
  $("chat-kb").addEventListener("change", newSession);
  $("side-close").addEventListener("click", closeSide);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("side").hidden) closeSide();
  });
}
