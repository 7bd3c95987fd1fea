// People and keys (admins only): users (add, disable, enable), API keys (create, shown once; revoke) and the
// audit trail. The key itself appears only in the answer to its creation: it is shown here once, until dismissed,
// and never kept anywhere else by the console.

import { api, ApiError, enc } from "./api.js";
import { fail, say, state } from "./app.js";
import { t } from "./i18n.js";
import { $, el, when } from "./dom.js";

export async function show() {
  await Promise.all([showUsers(), showKeys(), showAudit()]);
}

export function reset() {
  for (const id of ["users-rows", "keys-rows", "audit-rows", "key-user"]) $(id).replaceChildren();
  for (const id of ["user-error", "key-error"]) $(id).textContent = "";
  hideNewKey();
}

// Every failure of a form is shown by it (problem+json's detail); a 401 means the key stopped working: sign in.
function formError(id, error) {
  if (error instanceof ApiError && error.status !== 401) $(id).textContent = error.message;
  else fail(error);
}

// -- users ------------------------------------------------------------------------------------------------
async function showUsers() {
  const { users } = await api("/v1/users");
  $("users-empty").hidden = users.length > 0;
  $("users-rows").replaceChildren(...users.map((user) => {
    const actions = el("td", {});
    if (user.name !== state.me?.user) { // no one locks themselves out from here
      const label = user.disabled ? t("users.enable") : t("users.disable");
      const toggle = el("button", { type: "button", className: "link", textContent: label });
      toggle.setAttribute("aria-label", `${label} ${user.name}`);
      toggle.addEventListener("click", () => setDisabled(user.name, !user.disabled));
      actions.append(toggle);
    }
    const tr = el("tr", {},
      el("td", { textContent: user.name }),
      el("td", { textContent: t(`role.${user.role}`) }),
      el("td", { className: user.disabled ? "state-failed" : "", textContent: user.disabled ? t("users.disabled") : t("users.active") }),
      el("td", { className: "num", textContent: user.keys ?? "" }),
      actions);
    tr.dataset.user = user.name;
    tr.dataset.disabled = String(user.disabled);
    return tr;
  }));
  // The users a key can be made for: those not disabled; keep the one chosen.
  const select = $("key-user");
  const keep = select.value;
  const enabled = users.filter((u) => !u.disabled);
  select.replaceChildren(...enabled.map((u) => new Option(`${u.name} (${t(`role.${u.role}`)})`, u.name)));
  if (enabled.some((u) => u.name === keep)) select.value = keep;
  $("key-hint").hidden = enabled.length > 0;
  $("key-form").querySelector("button[type=submit]").disabled = enabled.length === 0;
}

async function addUser(event) {
  event.preventDefault();
  const name = $("user-name").value.trim();
  $("user-error").textContent = "";
  try {
    await api("/v1/users", { method: "POST", json: { name, role: $("user-role").value } });
    event.target.reset();
    say(t("users.added", { name }));
    await Promise.all([showUsers(), showAudit()]);
  } catch (error) {
    formError("user-error", error);
  }
}

async function setDisabled(name, disabled) {
  if (disabled && !confirm(t("users.confirmDisable", { name }))) return;
  try {
    await api(`/v1/users/${enc(name)}`, { method: "PATCH", json: { disabled } });
    await Promise.all([showUsers(), showAudit()]);
  } catch (error) {
    fail(error);
  }
}

// -- keys -------------------------------------------------------------------------------------------------
function keyStatus(key) {
  if (key.revoked) return ["revoked", `${t("keys.revoked")} ${when(key.revoked)}`];
  if (key.expires && new Date(key.expires) <= new Date()) return ["expired", t("keys.expired")];
  return ["active", t("keys.active")];
}

async function showKeys() {
  const { keys } = await api("/v1/keys");
  keys.reverse(); // newest first
  $("keys-empty").hidden = keys.length > 0;
  $("keys-rows").replaceChildren(...keys.map((key) => {
    const [status, text] = keyStatus(key);
    const actions = el("td", {});
    if (!key.revoked) {
      const revoke = el("button", { type: "button", className: "link", textContent: t("keys.revoke") });
      revoke.setAttribute("aria-label", `${t("keys.revoke")} ${key.prefix}`);
      revoke.addEventListener("click", () => revokeKey(key));
      actions.append(revoke);
    }
    const tr = el("tr", {},
      el("td", {}, el("code", { textContent: `${key.prefix}…` })),
      el("td", { textContent: key.user }),
      el("td", { className: "muted time", textContent: when(key.created) }),
      el("td", { className: "muted time", textContent: key.expires ? when(key.expires) : t("keys.never") }),
      el("td", { className: "muted time", textContent: when(key.last_used) }),
      el("td", { className: status === "active" ? "state-ready" : "state-failed", textContent: text }),
      actions);
    tr.dataset.key = key.id;
    tr.dataset.status = status;
    return tr;
  }));
}

async function createKey(event) {
  event.preventDefault();
  const user = $("key-user").value;
  const days = $("key-days").value;
  $("key-error").textContent = "";
  hideNewKey();
  try {
    const created = await api("/v1/keys", { method: "POST",
      json: days === "" ? { user } : { user, expires_days: Number(days) } });
    $("key-days").value = "";
    showNewKey(created);
    await Promise.all([showUsers(), showKeys(), showAudit()]);
  } catch (error) {
    formError("key-error", error);
  }
}

function showNewKey(created) {
  $("new-key-user").textContent = created.user;
  $("new-key-text").value = created.key;
  $("new-key").dataset.key = created.id;
  $("new-key-copied").textContent = "";
  $("new-key").hidden = false;
  $("new-key-text").focus();
  $("new-key-text").select();
}

function hideNewKey() {
  $("new-key-text").value = "";
  $("new-key-copied").textContent = "";
  delete $("new-key").dataset.key;
  $("new-key").hidden = true;
}

async function copyNewKey() {
  const text = $("new-key-text").value;
  try {
    await navigator.clipboard.writeText(text);
    $("new-key-copied").textContent = t("keys.copied");
  } catch {
    $("new-key-text").select(); // no clipboard permission: the key is selected, for the keyboard's copy
    $("new-key-copied").textContent = document.execCommand?.("copy") ? t("keys.copied") : t("keys.copyFailed");
  }
}

async function revokeKey(key) {
  if (!confirm(t("keys.confirmRevoke", { prefix: key.prefix, user: key.user }))) return;
  try {
    await api(`/v1/keys/${enc(key.id)}`, { method: "DELETE" });
    say(t("keys.revokedSay", { prefix: key.prefix }));
    await Promise.all([showUsers(), showKeys(), showAudit()]);
  } catch (error) {
    fail(error);
  }
}

// -- the audit trail --------------------------------------------------------------------------------------
function detail(event) {
  const entries = Object.entries(event.detail || {}).filter(([, value]) => value !== null && value !== undefined);
  return entries.map(([name, value]) => `${name}: ${typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(" · ");
}

async function showAudit() {
  const action = $("audit-action").value;
  const { events } = await api(`/v1/audit?limit=200${action ? `&action=${enc(action)}` : ""}`);
  $("audit-empty").hidden = events.length > 0;
  $("audit-rows").replaceChildren(...events.map((event) => {
    const at = el("td", { className: "muted time", textContent: when(event.at) });
    at.title = event.at;
    const tr = el("tr", {}, at,
      el("td", { className: "actor", textContent: event.actor }),
      el("td", {}, el("code", { textContent: event.action })),
      el("td", { textContent: event.kb ?? "" }),
      el("td", { className: "target", textContent: event.target ?? "" }),
      el("td", { className: "muted", textContent: detail(event) }));
    tr.dataset.action = event.action;
    return tr;
  }));
}

export function wire() {
  $("user-form").addEventListener("submit", addUser);
  $("key-form").addEventListener("submit", createKey);
  $("new-key-copy").addEventListener("click", copyNewKey);
  $("new-key-done").addEventListener("click", () => {
    hideNewKey();
    $("key-user").focus();
  });
  $("audit-action").addEventListener("change", () => showAudit().catch(fail));
}
