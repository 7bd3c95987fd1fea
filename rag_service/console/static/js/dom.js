// The DOM helpers every view uses.

export const $ = (id) => document.getElementById(id);

// An element with properties and children: el("button", { type: "button", textContent: "OK" }).
export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// An ISO time as "YYYY-MM-DD HH:MM" in UTC (as the server records it), "" for none.
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toISOString().slice(0, 16).replace("T", " ");
}
