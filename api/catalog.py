"""Which models and versions exist and in what state, from the repository on disk (read without
TensorFlow) and the workers' heartbeats."""
import os
import time

from jobs import keys, registry, repository, routing

RANK = {"available": 0, "loading": 1, "unloading": 2, "unavailable": 3}
NO_WORKER = "no live worker serves this version"
FALLBACK_TTL_S = 1.0


class Catalog:
    def __init__(self, settings, redis):
        self.settings, self.redis = settings, redis
        self._cache: dict[str, tuple[float, list]] = {}
        self._names: tuple[float, list[str]] = (float("-inf"), [])
        self._fallbacks: dict[str, tuple[float, str]] = {}

    def repo_names(self) -> list[str]:
        """Model names in the local repository, re-read at most every 2 s."""
        at, names = self._names
        if time.monotonic() - at > 2:
            names = repository.model_names(self.settings.model_repository)
            self._names = (time.monotonic(), names)
        return names

    def repo_versions(self, name: str) -> list[repository.VersionState]:
        at, states = self._cache.get(name, (float("-inf"), []))
        if time.monotonic() - at > 2:
            states = repository.served_versions(self.settings.model_repository, name,
                                                self.settings.max_batch_size)
            self._cache[name] = (time.monotonic(), states)
        return states

    def forget(self, name: str):
        self._cache.pop(name, None)
        self._fallbacks.pop(name, None)
        self._names = (float("-inf"), [])

    def exists(self, name: str) -> bool:
        if not repository.NAME_RE.match(name):
            return False
        # Looked up on disk each time (one directory read), not in the cache: another API
        # process may have just removed the model.
        model_dir = os.path.join(self.settings.model_repository, name)
        return bool(repository.versions(model_dir)) or bool(
            self.redis.sismember(keys.models(), name))

    def _served(self, name: str) -> list[dict]:
        return [m for w in registry.live_workers(self.redis, self.settings.heartbeat_ttl_s)
                for m in w["models"] if m["name"] == name]

    def fallback_version(self, name: str) -> str:
        """Where a job goes while no worker has set the default: the highest version the
        repository serves, or that a live worker serves. Kept for a second: each submit asks,
        and it reads every worker's heartbeat (labels and all), though it only matters until
        the workers set the default."""
        at, version = self._fallbacks.get(name, (float("-inf"), ""))
        if time.monotonic() - at > FALLBACK_TTL_S:
            versions = [vs.version for vs in self.repo_versions(name) if vs.spec]
            versions += [m["version"] for m in self._served(name) if m["state"] == "available"]
            version = str(max(versions)) if versions else ""
            self._fallbacks[name] = (time.monotonic(), version)
        return version

    def version_exists(self, name: str, version: int) -> bool:
        return any(vs.version == version and vs.spec for vs in self.repo_versions(name)) or any(
            m["version"] == version and m["state"] == "available" for m in self._served(name))

    def input_of(self, name: str, version: int | None = None) -> dict:
        """The input the model takes: {"kind", "dtype", "shape", "names"}; that of `version`
        when the repository or a worker knows it, else of the highest version."""
        if version is not None:
            known = self._input_of(name, lambda v: v == version)
            if known:
                return known
        return self._input_of(name, lambda v: True) or {"kind": "image", "name": "image"}

    def _input_of(self, name: str, wanted) -> dict | None:
        specs = [vs.spec for vs in self.repo_versions(name) if vs.spec and wanted(vs.version)]
        if specs:
            s = specs[-1]
            return {"kind": s.kind, "dtype": s.dtype, "shape": list(s.shape),
                    "names": list(s.names), "name": s.input_name}
        served = [m for m in self._served(name) if wanted(m["version"])]
        for m in sorted(served, key=lambda m: -m["version"]):
            if "kind" in m:
                return {"kind": m["kind"], "dtype": m.get("dtype", "float32"),
                        "shape": m["input_shape"], "names": m.get("names", []),
                        "name": m.get("input_name", "input")}
        return None

    def served(self, name: str, version: int | None = None) -> dict | None:
        """A live worker's record of the version (default: the highest available)."""
        records = [m for m in self._served(name) if m["state"] == "available"
                   and (version is None or m["version"] == version)]
        return max(records, key=lambda m: m["version"]) if records else None

    def states(self, workers: list[dict] | None = None) -> dict[str, dict]:
        """Every known model with its versions, their states, workers and backlog. `workers`:
        the live workers' heartbeats, when the caller has read them already."""
        if workers is None:
            workers = registry.live_workers(self.redis, self.settings.heartbeat_ttl_s)
        names = set(self.repo_names()) | routing.known_models(self.redis)
        names |= {m["name"] for w in workers for m in w["models"]}
        models = {}
        for name in sorted(names):
            versions = {vs.version: {"version": vs.version, "state": "unavailable",
                                     "reason": vs.error or NO_WORKER, "workers": 0}
                        for vs in self.repo_versions(name)}
            details = {}
            for worker in workers:
                for m in worker["models"]:
                    if m["name"] != name:
                        continue
                    v = versions.setdefault(m["version"], {"version": m["version"],
                                                           "state": "unavailable",
                                                           "reason": NO_WORKER, "workers": 0})
                    if m["state"] in ("available", "loading"):
                        v["workers"] += 1
                    if RANK[m["state"]] < RANK[v["state"]] or v["reason"] == NO_WORKER:
                        v["state"], v["reason"] = m["state"], m.get("reason")
                    elif m.get("reason") and RANK[m["state"]] == RANK[v["state"]]:
                        v["reason"] = m["reason"]
                    if m["state"] == "available":
                        details[m["version"]] = m
            models[name] = self._model(name, versions, details, workers)
        return models

    def _model(self, name, versions, details, workers) -> dict:
        ordered = [versions[v] for v in sorted(versions)]
        pipe = self.redis.pipeline(transaction=False)
        for v in ordered:
            pipe.xlen(keys.stream(name, v["version"]))
        pipe.hget(keys.routing(name), "default")
        *backlogs, default = pipe.execute()
        for v, backlog in zip(ordered, backlogs):
            v["backlog"] = backlog
            if v["reason"] is None:
                del v["reason"]
        state = min((v["state"] for v in ordered), key=RANK.get, default="unavailable")
        serving = {w["name"] for w in workers for m in w["models"]
                   if m["name"] == name and m["state"] == "available"}
        model = {"name": name, "state": state,
                 "default_version": int(default) if default else None,
                 "versions": ordered, "workers": len(serving), "backlog": sum(backlogs),
                 "model_version_status": [_tfs_status(v) for v in reversed(ordered)]}
        best = details.get(model["default_version"]) or (
            details[max(details)] if details else None)
        if best:
            model.update(kind=best.get("kind", "image"), labels=best.get("labels", []),
                         input_shape=best.get("input_shape"),
                         max_batch_size=best.get("max_batch_size"))
        return model


def _tfs_status(v: dict) -> dict:
    """A version's state as TF Serving reports it."""
    state = {"available": "AVAILABLE", "loading": "LOADING", "unloading": "UNLOADING"}.get(
        v["state"], "END")
    ok = v["state"] != "unavailable"
    return {"version": str(v["version"]), "state": state,
            "status": {"error_code": "OK" if ok else "UNKNOWN",
                       "error_message": "" if ok else v.get("reason", "")}}
