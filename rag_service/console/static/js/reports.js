// Evaluation reports: the list, and one report's self-contained HTML in a sandboxed frame.

import { api, enc } from "./api.js";
import { fail } from "./app.js";
import { $ } from "./dom.js";

export async function show() {
  const { reports } = await api("/v1/reports");
  $("reports-empty").hidden = reports.length > 0;
  $("report-list").replaceChildren(...reports.map((report) => {
    const open = Object.assign(document.createElement("button"), { type: "button", textContent: report.id });
    open.addEventListener("click", () => view(report).catch(fail));
    const li = document.createElement("li");
    li.append(open);
    return li;
  }));
}

export function reset() {
  $("report-list").replaceChildren();
  $("report-frame").removeAttribute("srcdoc");
}

async function view(report) {
  const fmt = report.formats.includes("html") ? "html" : report.formats[0];
  const text = await api(`/v1/reports/${report.id.split("/").map(enc).join("/")}/${fmt}`, { text: true });
  const frame = $("report-frame");
  frame.title = report.id;
  if (fmt === "html") frame.srcdoc = text;
  else frame.srcdoc = `<pre style="white-space:pre-wrap">${text.replace(/[&<]/g, (c) => (c === "&" ? "&amp;" : "&lt;"))}</pre>`;
}
