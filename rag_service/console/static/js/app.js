// The console's shell: sign-in, the tabs (one view per URL hash), the language switch, the status line.
// Each view lives in its own module and exports show(); they share the list of knowledge bases held here, and
// who is signed in (GET /v1/me), so each view shows only what that person may use.

import { api, ApiError, saveKey } from "./api.js";
import { apply, lang, setLang, t } from "./i18n.js";
import * as admin from "./admin.js";
import * as chat from "./chat.js";
import * as kbs from "./kbs.js";
import * as reports from "./reports.js";
import * as search from "./search.js";
import { $ } from "./dom.js";

const views = { kbs, chat, search, reports, admin };
// Views only an admin may open (their routes answer 403 to anyone else).
const ADMIN_ONLY = new Set(["reports", "admin"]);

// me: GET /v1/me, {user, role, key_id, admin, can_create_kbs}; null while nobody is signed in.
export const state = { kbs: [], me: null };

const allowed = (name) => !ADMIN_ONLY.has(name) || Boolean(state.me?.admin);

// A knowledge base's access level (read < write < manage) at least `need`?
const LEVELS = ["read", "write", "manage"];
export const may = (access, need) => LEVELS.indexOf(access) >= LEVELS.indexOf(need);

export function say(message) {
  $("status").textContent = message;
}

export function fail(error) {
  if (error instanceof ApiError && error.status === 401) return signIn();
  say(error.message);
}

// Fill every knowledge-base <select> with the current list, keeping each one's choice when it still exists.
export async function refreshKbs() {
  state.kbs = (await api("/v1/kbs")).kbs;
  for (const select of document.querySelectorAll("select[data-kbs]")) {
    const keep = select.value;
    select.replaceChildren(...state.kbs.map((kb) => new Option(kb.name, kb.name)));
    if (state.kbs.some((kb) => kb.name === keep)) select.value = keep;
  }
  return state.kbs;
}

function signIn(wrong = false) {
  state.me = null;
  state.kbs = [];
  for (const view of Object.values(views)) view.reset?.(); // nothing of the last person stays on the page
  $("tabs").hidden = true;
  $("signout").hidden = true;
  $("whoami").hidden = true;
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== "view-signin";
  $("signin-error").textContent = wrong ? t("signin.wrong") : "";
  $("signin-key").focus();
}

async function route() {
  if (!state.me) return;
  const asked = location.hash.slice(1);
  const name = views[asked] && allowed(asked) ? asked : "kbs";
  if (asked && asked !== name) history.replaceState(null, "", "#kbs");
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  for (const link of document.querySelectorAll("#tabs a[data-view]")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  say("");
  try {
    await refreshKbs();
    await views[name].show();
  } catch (error) {
    fail(error);
  }
}

// Who is signed in, in the header, and only the tabs they may use.
function showMe(me) {
  state.me = me;
  const role = t(`role.${me.role}`);
  $("whoami-name").textContent = me.user;
  $("whoami-role").textContent = role;
  $("whoami").title = t("whoami", { user: me.user, role });
  $("whoami").hidden = false;
  for (const link of document.querySelectorAll("#tabs a[data-view]")) link.hidden = !allowed(link.dataset.view);
  $("tabs").hidden = false;
  $("signout").hidden = false;
}

// Signed in when the stored key (if any: a server without keys is open) says who it is; a 401 asks for a key,
// and says the one just typed was refused (`typed`).
async function start(typed = false) {
  let me;
  try {
    me = await api("/v1/me");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signIn(typed);
    return say(error.message);
  }
  $("signin-key").value = "";
  showMe(me);
  await route();
}

function wire() {
  for (const select of ["chat-kb", "search-kb"]) $(select).dataset.kbs = "";
  $("lang").textContent = t("lang.other");
  $("lang").addEventListener("click", () => {
    setLang(lang() === "zh" ? "en" : "zh");
    $("lang").textContent = t("lang.other");
    if (state.me) showMe(state.me);
    route();
  });
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    saveKey($("signin-key").value.trim());
    await start(true);
  });
  $("signout").addEventListener("click", () => {
    saveKey("");
    signIn();
  });
  window.addEventListener("hashchange", route);
  for (const view of Object.values(views)) view.wire?.();
}

apply(document);
wire();
start();
