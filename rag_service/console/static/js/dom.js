// The two DOM helpers every view uses.

export const $ = (id) => document.getElementById(id);

// An element with properties and children: el("button", { type: "button", textContent: "OK" }).
export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}
