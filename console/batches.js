// Batches: the tenant's bulk batches (GET /v1/batches) with a progress bar from their counts,
// the ETA, a cancel button while they run, and their results and errors files.
import { call, get } from "./api.js";
import { errorText, h, message, num, swap, table, when } from "./dom.js";
import { every, REFRESH_MS } from "./live.js";

const ENDED = new Set(["completed", "failed", "cancelled", "expired"]);

export default {
  title: "Batches",
  enter(root) {
    const body = h("div", { id: "batches" }, message("Loading…", "muted"));
    const notice = h("div", { "aria-live": "polite" });
    root.append(h("h1", {}, "Batches"), h("p", { class: "muted" }, "Bulk batch jobs: one file " +
      "of inputs each (docs/batches.md). Create them with POST /v1/models/<model>/batches."),
    notice, body);

    async function cancel(id) {
      try {
        await call(`v1/batches/${id}/cancel`, { method: "POST" });
      } catch (err) {
        swap(notice, message(errorText(err)));
      }
    }

    // With the key in a header, not a link: fetched here, then saved from a blob URL.
    async function download(batch, which) {
      try {
        const response = await call(`v1/batches/${batch.id}/${which}`, { raw: true });
        const blobUrl = URL.createObjectURL(await response.blob());
        const a = h("a", { href: blobUrl, download: `${batch.id}-${which}.jsonl`, hidden: true });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(blobUrl), 10000);
      } catch (err) {
        swap(notice, message(errorText(err)));
      }
    }

    return every(REFRESH_MS, async () => {
      const { data } = await get("v1/batches?limit=100");
      swap(body, table(["Batch", "Model", "Status", "Progress", "ETA", "Created", ""],
        data.map((b) => {
          const c = b.request_counts || { total: 0, completed: 0, failed: 0 };
          const done = c.completed + c.failed;
          const eta = b.progress && b.progress.eta_s !== null
            ? `${num(b.progress.eta_s, 0)} s (${num(b.progress.inputs_per_s, 1)}/s)` : "–";
          return h("tr", { "data-batch": b.id },
            h("th", { scope: "row", class: "mono" }, b.id),
            h("td", {}, `${b.model}${b.version !== null ? ` v${b.version}` : ""}`),
            h("td", {}, h("span", { class: `status status-${b.status}` }, b.status)),
            h("td", {}, progress(done, c.total),
              h("span", { class: "muted small" },
                `${c.completed} done, ${c.failed} failed of ${c.total}`)),
            h("td", {}, eta),
            h("td", {}, when(b.created_at)),
            h("td", { class: "actions" },
              ENDED.has(b.status) ? null : h("button", { type: "button", class: "quiet",
                onclick: () => cancel(b.id) }, "Cancel"),
              h("button", { type: "button", class: "quiet",
                onclick: () => download(b, "results") }, "Results"),
              h("button", { type: "button", class: "quiet",
                onclick: () => download(b, "errors") }, "Errors")));
        }), "No batches yet."));
    }, (err) => swap(body, message(errorText(err))));
  },
};

function progress(done, total) {
  const bar = h("progress", { max: String(Math.max(total, 1)), value: String(done),
    "aria-label": `${done} of ${total} inputs` });
  return bar;
}
