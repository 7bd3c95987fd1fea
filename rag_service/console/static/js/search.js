// Search playground: one query in bm25, vector and hybrid mode side by side, each hit explained.

import { api, enc } from "./api.js";
import { fail } from "./app.js";
import { t } from "./i18n.js";
import { $, el } from "./dom.js";

const MODES = ["bm25", "vector", "hybrid"];

export async function show() {}

export function reset() {
  $("search-query").value = "";
  $("search-results").replaceChildren();
}

function explain(hit) {
  const x = hit.explain || {};
  const parts = ["bm25", "vector"].filter((name) => x[name])
    .map((name) => `${name} #${x[name].rank} (${Number(x[name].score).toFixed(3)})`);
  parts.push(`fused ${Number(x.fused_score ?? hit.score).toFixed(4)}`);
  if (x.matched_terms?.length) parts.push(x.matched_terms.join(" "));
  return parts.join(" · ");
}

async function run(event) {
  event.preventDefault();
  const kb = $("search-kb").value;
  const body = { query: $("search-query").value, k: Number($("search-k").value) || 5, explain: true };
  try {
    const results = await Promise.all(MODES.map((mode) =>
      api(`/v1/kbs/${enc(kb)}/search`, { method: "POST", json: { ...body, mode } })));
    $("search-results").replaceChildren(...results.map(({ hits }, i) => {
      const column = el("div", { className: "card" }, el("h2", { textContent: MODES[i] }));
      column.dataset.mode = MODES[i];
      if (!hits.length) column.append(el("p", { className: "muted", textContent: t("search.none") }));
      for (const hit of hits) {
        column.append(el("div", { className: "hit" }, el("strong", { textContent: hit.source }),
          el("div", { className: "scores", textContent: explain(hit) }), el("div", { textContent: hit.text.slice(0, 220) })));
      }
      return column;
    }));
  } catch (error) {
    fail(error);
  }
}

export function wire() {
  $("search-form").addEventListener("submit", run);
}
