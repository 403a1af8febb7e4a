// The console's frame: sign-in, the page router (#/try, #/models, ...) and the live refresh
// of whichever page is shown.
import { ApiError, call, get, key, setKey } from "./api.js";
import { h } from "./dom.js";
import tryPage from "./try.js";
import modelsPage from "./models.js";
import jobsPage from "./jobs.js";
import batchesPage from "./batches.js";
import workersPage from "./workers.js";

const PAGES = { try: tryPage, models: modelsPage, jobs: jobsPage, batches: batchesPage,
  workers: workersPage };
const $ = (id) => document.getElementById(id);
let current = null;
let needsKey = false;

async function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  window.addEventListener("inferq:refused", refused);
  try {
    // /v1 answers without a key and says whether the server has keys: no 401 to find out.
    const index = await get("v1");
    needsKey = Boolean(index.authentication);
  } catch (err) {
    showPage(h("p", { class: "error", role: "alert" }, `inferq is not reachable: ${err.message}`));
    return;
  }
  if (needsKey && !key()) showSignIn();
  else signedIn();
}

function showSignIn(error = "") {
  leave();
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("page").replaceChildren();
  $("sign-in").hidden = false;
  $("sign-in-error").hidden = !error;
  $("sign-in-error").textContent = error;
  $("key").focus();
}

async function signIn(event) {
  event.preventDefault();
  const value = $("key").value.trim();
  if (!value) return;
  try {
    await call("v1/models", { headers: { Authorization: `Bearer ${value}` } });
  } catch (err) {
    const why = err instanceof ApiError && err.status === 401
      ? `That key was refused: ${err.message}.` : `Could not sign in: ${err.message}`;
    $("key").value = "";
    showSignIn(why);
    return;
  }
  setKey(value);
  $("key").value = "";
  signedIn();
}

function signOut() {
  setKey("");
  if (needsKey) showSignIn();
}

function signedIn() {
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = !needsKey;
  route();
}

function leave() {
  if (current && current.leave) current.leave();
  current = null;
}

// A page's request was refused (a revoked key): back to sign-in.
function refused(event) {
  if (!needsKey) return;
  setKey("");
  showSignIn(`The key was refused: ${event.detail}. Sign in again.`);
}

function showPage(...nodes) {
  $("page").replaceChildren(...nodes);
}

function route() {
  if (needsKey && !key()) return;
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const page = PAGES[name];
  if (!page) {
    location.replace("#/try");
    return;
  }
  leave();
  for (const link of $("nav").querySelectorAll("a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const root = h("div", { class: `page page-${name}` });
  showPage(root);
  document.title = `${page.title} · inferq console`;
  current = page.enter(root) || null;
}

start();
