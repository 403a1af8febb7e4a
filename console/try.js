// Try: send one image (or a tensor) to a model version and show what came back: the top-k
// labels as bars, the job's timings, and a curl line for the same request.
import { call, get, key, url } from "./api.js";
import { errorText, h, message, ms } from "./dom.js";
import { refusedKey } from "./live.js";

const WAIT_S = 30;

export default {
  title: "Try",
  enter(root) {
    const state = { models: [], file: null, preview: null };
    const modelSelect = h("select", { id: "try-model", name: "model" });
    const examples = h("div", { class: "examples", role: "group", "aria-label": "Examples" });
    const fileInput = h("input", { id: "try-file", type: "file", accept: "image/*",
      onchange: () => fileInput.files[0] && pick(fileInput.files[0]) });
    const preview = h("img", { id: "try-preview", alt: "", hidden: true });
    const fileName = h("span", { class: "muted", id: "try-file-name" }, "No image chosen.");
    const drop = h("div", { class: "drop", id: "try-drop" },
      h("label", { for: "try-file" }, "Drop an image here, or choose one: "), fileInput,
      fileName, preview);
    const tensor = h("textarea", { id: "try-tensor", rows: 6, spellcheck: "false",
      "aria-label": "Tensor input (JSON)" });
    const tensorBox = h("div", { hidden: true },
      h("label", { for: "try-tensor" }, "Input, as the JSON body of a job"), tensor);
    const run = h("button", { id: "try-run", type: "submit" }, "Run");
    const result = h("div", { id: "try-result", "aria-live": "polite" });
    const form = h("form", { class: "card", onsubmit: submit },
      h("div", { class: "row" }, h("label", { for: "try-model" }, "Model"), modelSelect),
      drop, examples, tensorBox, h("div", { class: "row" }, run));
    root.append(h("h1", {}, "Try a model"), form, result);

    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const file = e.dataTransfer.files[0];
      if (file) pick(file);
    });
    modelSelect.addEventListener("change", showInputKind);

    function selected() {
      const [name, version] = modelSelect.value.split("@");
      const model = state.models.find((m) => m.name === name);
      return { name, version, model };
    }

    function showInputKind() {
      const { model } = selected();
      const isTensor = model && model.kind === "tensor";
      drop.hidden = isTensor;
      examples.hidden = isTensor;
      tensorBox.hidden = !isTensor;
      if (isTensor) tensor.value = JSON.stringify({ instances: [zeros(model.input_shape || [1])] });
    }

    function pick(file) {
      state.file = file;
      fileName.textContent = `${file.name} (${Math.round(file.size / 1024 * 10) / 10} KB)`;
      if (state.preview) URL.revokeObjectURL(state.preview);
      state.preview = URL.createObjectURL(file);
      preview.src = state.preview;
      preview.alt = file.name;
      preview.hidden = false;
    }

    async function load() {
      try {
        const [{ models }, list] = await Promise.all([get("v1/models"),
          get("console/examples")]);
        state.models = models;
        const options = [];
        for (const m of models) {
          for (const v of [...m.versions].reverse()) {
            const label = `${m.name} v${v.version}${v.state === "available" ? "" : ` (${v.state})`}`;
            options.push(h("option", { value: `${m.name}@${v.version}`,
              selected: v.version === m.default_version }, label));
          }
        }
        modelSelect.replaceChildren(...options);
        if (!options.length) result.replaceChildren(message("No model is in the repository yet."));
        examples.replaceChildren(h("span", { class: "muted" }, "Examples:"),
          ...list.examples.map((ex) => h("button", { type: "button", class: "quiet",
            onclick: () => example(ex.name) }, ex.name)));
        showInputKind();
      } catch (err) {
        if (!refusedKey(err)) result.replaceChildren(message(errorText(err)));
      }
    }

    async function example(name) {
      try {
        const response = await call(`console/examples/${encodeURIComponent(name)}`,
          { raw: true });
        const blob = await response.blob();
        pick(new File([blob], name, { type: blob.type }));
      } catch (err) {
        result.replaceChildren(message(errorText(err)));
      }
    }

    async function submit(event) {
      event.preventDefault();
      const { name, version, model } = selected();
      if (!name) return;
      const isTensor = model && model.kind === "tensor";
      const path = `v1/models/${encodeURIComponent(name)}/versions/${version}/jobs`;
      let body;
      const headers = { Prefer: `wait=${WAIT_S}` };
      if (isTensor) {
        try {
          JSON.parse(tensor.value);
        } catch (err) {
          result.replaceChildren(message(`The input is not JSON: ${err.message}`));
          return;
        }
        body = tensor.value;
        headers["Content-Type"] = "application/json";
      } else {
        if (!state.file) {
          result.replaceChildren(message("Choose an image first (or an example)."));
          return;
        }
        body = new FormData();
        body.append("image", state.file, state.file.name);
      }
      run.disabled = true;
      result.replaceChildren(message("Running…", "muted"));
      const started = performance.now();
      try {
        let job = (await call(path, { method: "POST", body, headers })).body;
        while (!job.finished) {
          job = await get(`v1/jobs/${job.id}?wait=${WAIT_S}`);
        }
        const elapsed = performance.now() - started;
        result.replaceChildren(...show(job, elapsed, curlLine(path, isTensor, tensor.value,
          state.file)));
      } catch (err) {
        if (!refusedKey(err)) result.replaceChildren(message(errorText(err)));
      } finally {
        run.disabled = false;
      }
    }

    load();
    return { leave() { if (state.preview) URL.revokeObjectURL(state.preview); } };
  },
};

function zeros(shape) {
  if (!shape.length) return 0;
  const [n, ...rest] = shape;
  return Array.from({ length: n === null || n < 1 ? 1 : n }, () => zeros(rest));
}

function show(job, elapsedMs, curl) {
  const nodes = [];
  if (job.status !== "succeeded") {
    nodes.push(message(`The job ${job.status}${job.error ? `: ${job.error}` : ""}.`));
  }
  for (const out of job.outputs) {
    if (out.error) {
      nodes.push(message(`Input ${out.index}: ${out.error.message || out.error.code || out.error}`));
    } else if (out.top_k) {
      nodes.push(h("ol", { class: "bars", "aria-label": "Top labels" }, out.top_k.map((t) =>
        h("li", {},
          h("span", { class: "label" }, t.label),
          h("span", { class: "bar" }, fill(t.score)),
          h("span", { class: "score" }, t.score.toFixed(3))))));
    } else {
      nodes.push(h("pre", { class: "json" }, JSON.stringify(out.output ?? out, null, 1)));
    }
  }
  const m = job.metrics || {};
  nodes.push(h("dl", { class: "metrics", id: "try-metrics" },
    h("dt", {}, "queue_ms"), h("dd", { id: "try-queue" }, ms(m.queue_ms)),
    h("dt", {}, "predict_ms"), h("dd", { id: "try-predict" }, ms(m.predict_ms)),
    h("dt", {}, "batch_size"), h("dd", { id: "try-batch" }, String(m.batch_size ?? "–")),
    h("dt", {}, "end to end"), h("dd", { id: "try-total" }, ms(elapsedMs))));
  nodes.push(h("p", { class: "muted" }, `Job ${job.id}, ${job.model} v${job.version}.`));
  nodes.push(h("label", { for: "try-curl" }, "The same request with curl"),
    h("textarea", { id: "try-curl", readonly: true, rows: 3, spellcheck: "false" }, curl));
  return nodes;
}

// The width set through the CSSOM, not a style attribute: the page's CSP has no
// 'unsafe-inline' for styles.
function fill(score) {
  const el = h("span", { class: "fill" });
  el.style.width = `${Math.max(0, Math.min(1, Number(score))) * 100}%`;
  return el;
}

function curlLine(path, isTensor, json, file) {
  // The key itself never goes into the line: whoever copies it has their own.
  const auth = key() ? '-H "Authorization: Bearer $INFERQ_API_KEY" ' : "";
  const target = url(path);
  if (isTensor) {
    return `curl -s ${auth}-H 'Prefer: wait=${WAIT_S}' -H 'Content-Type: application/json' ` +
      `-d '${json.replace(/'/g, "'\\''")}' ${target}`;
  }
  return `curl -s ${auth}-H 'Prefer: wait=${WAIT_S}' -F image=@${shellWord(file.name)} ${target}`;
}

function shellWord(name) {
  return /^[\w.\/-]+$/.test(name) ? name : `'${name.replace(/'/g, "'\\''")}'`;
}
