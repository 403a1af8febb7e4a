// Workers (admin keys only): each live worker's host, GPU, models, heartbeat age, batches/s
// and mean batch size (GET /v1/workers), refreshed while shown.
import { get, isAdmin } from "./api.js";
import { errorText, h, message, num, swap, table } from "./dom.js";
import { every, REFRESH_MS } from "./live.js";

export default {
  title: "Workers",
  enter(root) {
    const body = h("div", { id: "workers" }, message("Loading…", "muted"));
    root.append(h("h1", {}, "Workers"), body);
    if (!isAdmin()) {
      swap(body, message("The Workers page needs an admin key (INFERQ_ADMIN_KEYS)."));
      return null;
    }
    let live = null;
    live = every(REFRESH_MS, async () => {
      const { workers } = await get("v1/workers");
      swap(body, table(["Worker", "Host", "GPU", "Models", "Heartbeat",
        "Batches/s", "Mean batch"], workers.map((w) => h("tr", { "data-worker": w.name },
        h("th", { scope: "row" }, w.name),
        h("td", {}, w.host || "–"),
        h("td", {}, w.gpu === null || w.gpu === undefined || w.gpu === "" ? "CPU" : String(w.gpu)),
        h("td", {}, w.models.map((m) => `${m.model} v${m.version}`).join(", ") || "–"),
        h("td", { class: "n" }, `${num(w.heartbeat_age_s, 1)} s ago`),
        h("td", { class: "n" }, num(w.batches_per_s, 2)),
        h("td", { class: "n" }, num(w.mean_batch_size, 1)))), "No live worker."));
    }, (err) => {
      if (err.status === 403) {
        // No longer an admin's key (the key file changed): say so once, and stop asking.
        swap(body, message("The Workers page needs an admin key " +
          "(INFERQ_ADMIN_KEYS)."));
        live.leave();
      } else {
        swap(body, message(errorText(err)));
      }
    });
    return live;
  },
};
