// The console's shell: sign-in, the tabs (one view per URL hash), the language switch, the status line.
// Each view lives in its own module and exports show(); they share the list of knowledge bases held here.

import { api, ApiError, saveKey } from "./api.js";
import { apply, lang, setLang, t } from "./i18n.js";
import * as chat from "./chat.js";
import * as kbs from "./kbs.js";
import * as reports from "./reports.js";
import * as search from "./search.js";
import { $ } from "./dom.js";

const views = { kbs, chat, search, reports };

export const state = { kbs: [] };

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
  $("tabs").hidden = true;
  $("signout").hidden = true;
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== "view-signin";
  $("signin-error").textContent = wrong ? t("signin.wrong") : "";
  $("signin-key").focus();
}

async function route() {
  const name = views[location.hash.slice(1)] ? location.hash.slice(1) : "kbs";
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

async function start() {
  try {
    await api("/v1/kbs");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signIn();
    return say(error.message);
  }
  $("tabs").hidden = false;
  $("signout").hidden = false;
  await route();
}

function wire() {
  for (const select of ["chat-kb", "search-kb"]) $(select).dataset.kbs = "";
  $("lang").textContent = t("lang.other");
  $("lang").addEventListener("click", () => {
    setLang(lang() === "zh" ? "en" : "zh");
    $("lang").textContent = t("lang.other");
    route();
  });
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    saveKey($("signin-key").value.trim());
    try {
      await api("/v1/kbs");
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return signIn(true);
      return say(error.message);
    }
    $("signin-key").value = "";
    await start();
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
