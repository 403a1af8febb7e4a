// The console's frame: sign-in, the page router (#/try, #/models, ...) and the live refresh
// of whichever page is shown.
import { call, get, key, setAdmin, setKey } from "./api.js";
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
    // /v1 answers without a key, says whether the server has keys and checks the key sent:
    // no 401 or 403 to find out.
    const index = await get("v1");
    needsKey = Boolean(index.authentication);
    if (!needsKey) signedIn(true);
    else if (index.key && index.key.valid) signedIn(index.key.admin);
    else {
      setKey("");
      showSignIn();
    }
  } catch (err) {
    showPage(h("p", { class: "error", role: "alert" }, `inferq is not reachable: ${err.message}`));
  }
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
  let checked;
  try {
    checked = (await call("v1", { headers: { Authorization: `Bearer ${value}` } })).body.key;
  } catch (err) {
    $("key").value = "";
    showSignIn(`Could not sign in: ${err.message}`);
    return;
  }
  $("key").value = "";
  if (!checked || !checked.valid) {
    showSignIn("That key was refused: the API key is not valid (unknown or revoked).");
    return;
  }
  setKey(value);
  signedIn(checked.admin);
}

function signOut() {
  setKey("");
  if (needsKey) showSignIn();
}

function signedIn(admin) {
  setAdmin(admin);
  // Workers is for admin keys: a tenant's key does not see the tab (nor makes a 403).
  $("nav").querySelector('a[href="#/workers"]').hidden = !admin;
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
