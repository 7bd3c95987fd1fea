// Knowledge bases (list, create, delete) and the documents of the one selected: uploads with per-file progress.

import { api, ApiError, enc } from "./api.js";
import { fail, refreshKbs, say } from "./app.js";
import { t } from "./i18n.js";
import { $, el } from "./dom.js";

let selected = null;

export async function show() {
  const kbs = await refreshKbsWithCounts();
  $("kbs-empty").hidden = kbs.length > 0;
  $("kbs-rows").replaceChildren(...kbs.map(row));
  if (selected && !kbs.some((kb) => kb.name === selected)) selected = null;
  $("docs-panel").hidden = !selected;
  if (selected) await showDocuments();
}

async function refreshKbsWithCounts() {
  const kbs = await refreshKbs();
  return Promise.all(kbs.map((kb) => api(`/v1/kbs/${enc(kb.name)}`)));
}

function row(kb) {
  const open = el("button", { type: "button", className: "link", textContent: t("kbs.open") });
  open.addEventListener("click", () => select(kb.name));
  const remove = el("button", { type: "button", className: "link", textContent: t("kbs.delete") });
  remove.setAttribute("aria-label", `${t("kbs.delete")} ${kb.name}`);
  remove.addEventListener("click", () => deleteKb(kb.name));
  const tr = el("tr", {},
    el("td", {}, el("button", { type: "button", className: "link", textContent: kb.name, onclick: () => select(kb.name) })),
    el("td", { className: "num", textContent: kb.documents }),
    el("td", { className: "num", textContent: kb.chunks }),
    el("td", { className: "muted", textContent: `${kb.splitter} ${kb.chunk_size}/${kb.chunk_overlap} · ${kb.embedder}` }),
    el("td", {}, open, remove));
  tr.dataset.kb = kb.name;
  if (kb.name === selected) tr.classList.add("selected");
  return tr;
}

async function select(name) {
  selected = name;
  await show();
  $("drop").focus();
}

async function deleteKb(name) {
  if (!confirm(t("kbs.confirmDelete", { name }))) return;
  try {
    await api(`/v1/kbs/${enc(name)}`, { method: "DELETE" });
    say(t("kbs.deleted", { name }));
    await show();
  } catch (error) {
    fail(error);
  }
}

async function createKb(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = {};
  for (const [key, value] of form) {
    if (value === "") continue;
    body[key] = ["chunk_size", "chunk_overlap"].includes(key) ? Number(value) : value;
  }
  $("kb-error").textContent = "";
  try {
    const kb = await api("/v1/kbs", { method: "POST", json: body });
    event.target.reset();
    say(t("kbs.created", { name: kb.name }));
    selected = kb.name;
    await show();
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401) $("kb-error").textContent = error.message;
    else fail(error);
  }
}

// -- documents --------------------------------------------------------------------------------------------
async function showDocuments() {
  $("docs-kb").textContent = selected;
  const { documents } = await api(`/v1/kbs/${enc(selected)}/documents`);
  $("docs-rows").replaceChildren(...documents.map((doc) => {
    const remove = el("button", { type: "button", className: "link", textContent: t("docs.delete") });
    remove.setAttribute("aria-label", `${t("docs.delete")} ${doc.source}`);
    remove.addEventListener("click", () => deleteDocument(doc));
    const tr = el("tr", {},
      el("td", { textContent: doc.source }),
      el("td", { className: `state-${doc.status}`, textContent: t(`state.${doc.status}`) }),
      el("td", { className: "num", textContent: doc.chunks }),
      pagesCell(doc),
      el("td", { className: "num", textContent: doc.chars == null ? "" : t("docs.chars", { n: doc.chars }) }),
      el("td", {}, remove));
    tr.dataset.source = doc.source;
    return tr;
  }));
}

// Pages (slides, sheets) when the format has them, and an "OCR" mark when some were read from images: their text
// may hold recognition errors, and the reader should know before trusting a quote.
function pagesCell(doc) {
  const cell = el("td", { className: "num", textContent: doc.pages == null ? "" : String(doc.pages) });
  if (doc.ocr_pages) {
    const mark = el("span", { className: "ocr", textContent: "OCR" });
    mark.title = t("docs.ocr", { n: doc.ocr_pages, pages: doc.pages ?? doc.ocr_pages });
    cell.append(" ", mark);
  }
  return cell;
}

async function deleteDocument(doc) {
  if (!confirm(t("docs.confirmDelete", { name: doc.source }))) return;
  try {
    await api(`/v1/kbs/${enc(selected)}/documents/${enc(doc.id)}`, { method: "DELETE" });
    await show();
  } catch (error) {
    fail(error);
  }
}

// Each file is its own upload and job, so one file's error (too large, unsupported, a name collision) never
// costs the others; its row goes queued → uploading → indexing → ready, or shows the reason it failed.
function uploadAll(files) {
  const kb = selected;
  for (const file of files) uploadOne(kb, file, uploadRow(file));
}

function uploadRow(file) {
  const state = el("span", { className: "state-queued", textContent: t("state.queued") });
  const bar = el("progress", { max: 1, value: 0 });
  const li = el("li", {}, el("span", { textContent: file.name }), state, bar);
  li.dataset.file = file.name;
  $("uploads").prepend(li);
  return { li, state, bar };
}

function setState(row, name, detail = "") {
  row.state.className = `state-${name}`;
  row.state.textContent = t(`state.${name}`) + (detail ? `: ${detail}` : "");
  row.li.dataset.state = name;
}

async function uploadOne(kb, file, row, replace = false) {
  const form = new FormData();
  form.append("file", file, file.name);
  setState(row, "uploading");
  try {
    const job = await api(`/v1/kbs/${enc(kb)}/documents${replace ? "?replace=true" : ""}`, { method: "POST", form });
    setState(row, "indexing");
    for (;;) {
      const status = await api(`/v1/jobs/${enc(job.job_id)}`);
      row.bar.value = status.progress;
      if (["succeeded", "failed", "cancelled"].includes(status.status)) {
        const result = status.files[0] || {};
        if (status.status !== "succeeded") setState(row, "failed", result.error || status.error);
        else setState(row, "ready", `${result.status}, ${result.chunks} ${t("kbs.chunks")}`);
        row.bar.value = 1;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    if (kb === selected) await show();
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) return fail(error);
    setState(row, "failed", error.message);
    if (error.code === "document_exists") {
      const again = el("button", { type: "button", className: "secondary", textContent: t("docs.replace") });
      again.addEventListener("click", () => {
        again.remove();
        uploadOne(kb, file, row, true);
      });
      row.li.append(again);
    }
  }
}

export function wire() {
  $("kb-form").addEventListener("submit", createKb);
  $("docs-files").addEventListener("change", (event) => {
    uploadAll([...event.target.files]);
    event.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    uploadAll([...event.dataTransfer.files]);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("docs-files").click();
    }
  });
}
