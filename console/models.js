// Models: each model version's state, the workers serving it, its backlog, and its jobs/s and
// p50 latency over the last minute (GET /v1/stats), refreshed while shown.
import { get } from "./api.js";
import { errorText, h, message, ms, num, swap, table } from "./dom.js";
import { every, REFRESH_MS } from "./live.js";

export default {
  title: "Models",
  enter(root) {
    const body = h("div", { id: "models" }, message("Loading…", "muted"));
    const note = h("p", { class: "muted", id: "models-window" });
    root.append(h("h1", {}, "Models"), note, body);
    return every(REFRESH_MS, async () => {
      const [{ models }, stats] = await Promise.all([get("v1/models"), get("v1/stats")]);
      const figures = new Map(stats.models.map((s) => [`${s.model}@${s.version}`, s]));
      note.textContent = `Rates and latency over the last ${stats.window_s} s; ` +
        `updated ${new Date().toLocaleTimeString()}.`;
      const rows = [];
      for (const m of models) {
        for (const v of [...m.versions].reverse()) {
          const s = figures.get(`${m.name}@${v.version}`) || {};
          rows.push(h("tr", { "data-model": m.name, "data-version": v.version },
            h("th", { scope: "row" }, m.name),
            h("td", {}, `v${v.version}${v.version === m.default_version ? " (default)" : ""}`),
            h("td", {}, h("span", { class: `state state-${v.state}`, title: v.reason || "" },
              v.state)),
            h("td", { class: "n workers" }, String(s.workers ?? v.workers)),
            h("td", { class: "n" }, String(s.backlog ?? v.backlog ?? 0)),
            h("td", { class: "n" }, num(s.jobs_per_s, 2)),
            h("td", { class: "n" }, ms(s.p50_ms)),
            h("td", { class: "n" }, ms(s.p99_ms))));
        }
      }
      swap(body, table(["Model", "Version", "State", "Workers", "Backlog", "Jobs/s",
        "p50", "p99"], rows, "No model is in the repository yet."));
    }, (err) => swap(body, message(errorText(err))));
  },
};
