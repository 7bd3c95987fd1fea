// Knowledge bases (list, create, delete) and the documents of the one selected: uploads with per-file progress,
// and who may use it. Each KB's "access" (read < write < manage) decides what is offered: uploading and deleting
// documents need write, deleting the KB and its grants need manage; creating one needs can_create_kbs (/v1/me).

import { api, ApiError, enc } from "./api.js";
import { fail, may, refreshKbs, say, state } from "./app.js";
import { t } from "./i18n.js";
import { $, el, when } from "./dom.js";

let selected = null;
let access = {}; // KB name -> the caller's level on it

export async function show() {
  const kbs = await refreshKbsWithCounts();
  access = Object.fromEntries(kbs.map((kb) => [kb.name, kb.access ?? "manage"]));
  const create = Boolean(state.me?.can_create_kbs);
  $("kb-form").hidden = !create;
  $("kbs-grid").classList.toggle("one", !create);
  $("kbs-empty").textContent = create ? t("kbs.empty") : t("kbs.emptyReader");
  $("kbs-empty").hidden = kbs.length > 0;
  $("kbs-rows").replaceChildren(...kbs.map(row));
  if (selected && !kbs.some((kb) => kb.name === selected)) selected = null;
  $("docs-panel").hidden = !selected;
  $("grants-panel").hidden = !selected || !may(access[selected], "manage");
  if (selected) await showDocuments();
  if (selected && may(access[selected], "manage")) await showGrants();
}

export function reset() {
  selected = null;
  access = {};
  $("kbs-rows").replaceChildren();
  $("docs-rows").replaceChildren();
  $("uploads").replaceChildren();
  $("grants-rows").replaceChildren();
  $("grant-users").replaceChildren();
  $("docs-panel").hidden = true;
  $("grants-panel").hidden = true;
  for (const id of ["kb-error", "grant-error"]) $(id).textContent = "";
}

async function refreshKbsWithCounts() {
  const kbs = await refreshKbs();
  return Promise.all(kbs.map((kb) => api(`/v1/kbs/${enc(kb.name)}`)));
}

function row(kb) {
  const open = el("button", { type: "button", className: "link", textContent: t("kbs.open") });
  open.addEventListener("click", () => select(kb.name));
  const actions = el("td", {}, open);
  if (may(kb.access ?? "manage", "manage")) {
    const remove = el("button", { type: "button", className: "link", textContent: t("kbs.delete") });
    remove.setAttribute("aria-label", `${t("kbs.delete")} ${kb.name}`);
    remove.addEventListener("click", () => deleteKb(kb.name));
    actions.append(remove);
  }
  const tr = el("tr", {},
    el("td", {}, el("button", { type: "button", className: "link", textContent: kb.name, onclick: () => select(kb.name) })),
    el("td", { className: "num", textContent: kb.documents }),
    el("td", { className: "num", textContent: kb.chunks }),
    el("td", { className: "muted", textContent: `${kb.splitter} ${kb.chunk_size}/${kb.chunk_overlap} · ${kb.embedder}` }),
    el("td", { className: "access", textContent: kb.access ? t(`level.${kb.access}`) : "" }),
    actions);
  tr.dataset.kb = kb.name;
  if (kb.name === selected) tr.classList.add("selected");
  return tr;
}

async function select(name) {
  selected = name;
  await show();
  if (!$("drop").hidden) $("drop").focus();
  else $("docs-panel").querySelector("h2").scrollIntoView({ block: "nearest" });
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
  const write = may(access[selected], "write");
  $("drop").hidden = !write;
  $("uploads").hidden = !write;
  const { documents } = await api(`/v1/kbs/${enc(selected)}/documents`);
  $("docs-rows").replaceChildren(...documents.map((doc) => {
    const remove = el("td", {});
    if (write) {
      const button = el("button", { type: "button", className: "link", textContent: t("docs.delete") });
      button.setAttribute("aria-label", `${t("docs.delete")} ${doc.source}`);
      button.addEventListener("click", () => deleteDocument(doc));
      remove.append(button);
    }
    const tr = el("tr", {},
      el("td", { textContent: doc.source }),
      el("td", { className: `state-${doc.status}`, textContent: t(`state.${doc.status}`) }),
      el("td", { className: "num", textContent: doc.chunks }),
      pagesCell(doc),
      el("td", { className: "num", textContent: doc.chars == null ? "" : t("docs.chars", { n: doc.chars }) }),
      remove);
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
      // Twice a second while it runs; a queued job (waiting behind others) is asked every 2 s.
      await new Promise((resolve) => setTimeout(resolve, status.status === "queued" ? 2000 : 500));
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

// -- who may use the selected KB (its managers see this) ----------------------------------------------------
async function showGrants() {
  const kb = selected;
  $("grants-kb").textContent = kb;
  const { grants } = await api(`/v1/kbs/${enc(kb)}/grants`);
  $("grants-empty").hidden = grants.length > 0;
  $("grants-rows").replaceChildren(...grants.map((grant) => {
    const remove = el("button", { type: "button", className: "link", textContent: t("grants.remove") });
    remove.setAttribute("aria-label", `${t("grants.remove")}: ${grant.user}`);
    remove.addEventListener("click", () => removeGrant(kb, grant.user));
    const tr = el("tr", {},
      el("td", { textContent: grant.user }),
      el("td", { textContent: t(`level.${grant.level}`) }),
      el("td", { className: "muted time", textContent: when(grant.created) }),
      el("td", {}, remove));
    tr.dataset.user = grant.user;
    return tr;
  }));
  // Admins may list the users, which the name field then offers; a manager who is not an admin types the name.
  if (state.me?.admin) {
    try {
      const { users } = await api("/v1/users");
      $("grant-users").replaceChildren(...users.filter((u) => !u.disabled).map((u) => new Option(`${u.name} (${t(`role.${u.role}`)})`, u.name)));
    } catch (error) {
      if (!(error instanceof ApiError) || error.status === 401) throw error;
    }
  }
}

async function addGrant(event) {
  event.preventDefault();
  const kb = selected;
  const user = $("grant-user").value.trim();
  const level = $("grant-level").value;
  $("grant-error").textContent = "";
  try {
    await api(`/v1/kbs/${enc(kb)}/grants`, { method: "POST", json: { user, level } });
    event.target.reset();
    say(t("grants.added", { user, level: t(`level.${level}`), kb }));
    await showGrants();
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401) $("grant-error").textContent = error.message;
    else fail(error);
  }
}

async function removeGrant(kb, user) {
  if (!confirm(t("grants.confirmRemove", { user, kb }))) return;
  $("grant-error").textContent = "";
  try {
    await api(`/v1/kbs/${enc(kb)}/grants/${enc(user)}`, { method: "DELETE" });
    say(t("grants.removed", { user, kb }));
    await showGrants();
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401) $("grant-error").textContent = error.message;
    else fail(error);
  }
}

export function wire() {
  $("kb-form").addEventListener("submit", createKb);
  $("grant-form").addEventListener("submit", addGrant);
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
