// Live pages: refresh every 1-2 s while shown, one request at a time (the next waits for the
// last answer, so a slow server is never asked twice at once).

export const REFRESH_MS = 1500;

// A 401 while signed in (a revoked key): main.js takes the user back to sign-in.
export function refusedKey(err) {
  if (err && err.status === 401) {
    window.dispatchEvent(new CustomEvent("inferq:refused", { detail: err.message }));
    return true;
  }
  return false;
}

export function every(ms, refresh, onError) {
  let stopped = false;
  let timer = null;
  async function tick() {
    if (stopped) return;
    try {
      await refresh();
    } catch (err) {
      if (refusedKey(err)) return;
      if (!stopped) onError(err);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  }
  tick();
  return { leave() { stopped = true; clearTimeout(timer); } };
}
