// Jobs: the tenant's recent jobs (GET /v1/jobs), their status refreshed while shown; #/jobs/<id>
// is one job with its outputs and its webhook deliveries.
import { get } from "./api.js";
import { errorText, h, message, ms, swap, table, when } from "./dom.js";
import { every, REFRESH_MS } from "./live.js";

const PAGE = 50;

export default {
  title: "Jobs",
  enter(root) {
    const id = (location.hash.match(/^#\/jobs\/([\w-]+)/) || [])[1];
    return id ? detail(root, id) : list(root);
  },
};

function list(root) {
  const body = h("div", { id: "jobs" }, message("Loading…", "muted"));
  root.append(h("h1", {}, "Jobs"), h("p", { class: "muted" }, "Your most recent jobs, newest " +
    "first. Select one for its outputs and webhook deliveries."), body);
  return every(REFRESH_MS, async () => {
    const { jobs } = await get(`v1/jobs?limit=${PAGE}`);
    swap(body, table(["Job", "Model", "Status", "Inputs", "Created", "Finished"],
      jobs.map((j) => h("tr", { "data-job": j.id },
        h("th", { scope: "row" }, h("a", { href: `#/jobs/${j.id}`, class: "mono" }, short(j.id))),
        h("td", {}, `${j.model}${j.version ? ` v${j.version}` : ""}`),
        h("td", {}, h("span", { class: `status status-${j.status}` }, j.status)),
        h("td", { class: "n" }, String(j.inputs)),
        h("td", {}, when(j.created_at)),
        h("td", {}, when(j.finished_at)))),
      "No jobs yet: send one from Try."));
  }, (err) => swap(body, message(errorText(err))));
}

function detail(root, id) {
  const body = h("div", { id: "job" }, message("Loading…", "muted"));
  root.append(h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")),
    h("h1", {}, "Job ", h("span", { class: "mono" }, id)), body);
  let live = null;
  live = every(REFRESH_MS, async () => {
    const [job, { deliveries }] = await Promise.all([get(`v1/jobs/${id}`),
      get(`v1/jobs/${id}/deliveries`)]);
    const m = job.metrics || {};
    swap(body,
      h("dl", { class: "facts" },
        h("dt", {}, "Status"), h("dd", {}, h("span", { class: `status status-${job.status}` },
          job.status)),
        h("dt", {}, "Model"), h("dd", {}, `${job.model} v${job.version ?? "–"}`),
        h("dt", {}, "Created"), h("dd", {}, when(job.created_at)),
        h("dt", {}, "Completed"), h("dd", {}, when(job.completed_at)),
        h("dt", {}, "queue_ms"), h("dd", {}, ms(m.queue_ms)),
        h("dt", {}, "predict_ms"), h("dd", {}, ms(m.predict_ms)),
        h("dt", {}, "batch_size"), h("dd", {}, String(m.batch_size ?? "–"))),
      job.error ? message(job.error) : null,
      h("h2", {}, "Outputs"),
      h("pre", { class: "json", id: "job-outputs" }, JSON.stringify(job.outputs, null, 1)),
      h("h2", {}, "Webhook deliveries"),
      table(["Event", "URL", "Status", "Attempts", "Last answer", "Next attempt"],
        deliveries.map((d) => {
          const last = d.attempts[d.attempts.length - 1];
          const answer = !last ? "–" : last.status_code
            ? `${last.status_code} in ${ms(last.duration_ms)}` : last.error || "–";
          return h("tr", {},
            h("td", {}, d.event),
            h("td", { class: "mono" }, d.url),
            h("td", {}, h("span", { class: `status status-${d.status}` }, d.status)),
            h("td", { class: "n" }, String(d.attempts.length)),
            h("td", {}, answer),
            h("td", {}, when(d.next_attempt_at)));
        }), "No webhook for this job."));
    // A finished job changes no more; its deliveries may, until none is pending.
    if (job.finished && !deliveries.some((d) => d.status === "pending") && live) live.leave();
  }, (err) => swap(body, message(errorText(err))));
  return live;
}

function short(id) {
  return id.length > 12 ? `${id.slice(0, 12)}…` : id;
}
