// Small DOM helpers: build elements without innerHTML, so nothing from the API is ever
// read as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export function table(headers, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "scroll" },
    h("table", {},
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)));
}

export function num(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  return Number(value).toFixed(digits);
}

export function ms(value) {
  return value === null || value === undefined ? "–" : `${num(value, 1)} ms`;
}

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString();
}

export function errorText(err) {
  return err && err.message ? err.message : String(err);
}

export function message(text, kind = "error") {
  return h("p", { class: kind, role: kind === "error" ? "alert" : "status" }, text);
}

const FOCUSABLE = "a, button, input, select, textarea";

// Replace what `container` shows with `nodes`, for pages that refresh every second or two:
// nothing changes when the markup is the same, and keyboard focus stays where it was.
export function swap(container, ...nodes) {
  const next = h("div", {}, ...nodes);
  if (next.innerHTML === container.innerHTML) return;
  const focused = container.contains(document.activeElement)
    ? [...container.querySelectorAll(FOCUSABLE)].indexOf(document.activeElement) : -1;
  container.replaceChildren(...next.childNodes);
  if (focused >= 0) {
    const again = container.querySelectorAll(FOCUSABLE)[focused];
    if (again) again.focus();
  }
}
