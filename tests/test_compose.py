"""docker-compose.yml and the Dockerfiles, checked without a Docker engine.

The Compose file is validated against the Compose Specification's JSON Schema (the one
`docker compose` itself uses), then the properties a user relies on are asserted.
"""
import fnmatch
import json
import os
import re
import secrets
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

from tests.test_layout import imported

ROOT = Path(__file__).resolve().parents[1]
SHARED_SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"
VENDORED_SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"
WORKERS = ("worker-gpu0", "worker-cpu")


@pytest.fixture(scope="module")
def compose():
    # safe_load resolves YAML anchors and `<<` merge keys, as Compose does.
    with open(ROOT / "docker-compose.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


def schema():
    path = SHARED_SCHEMA if SHARED_SCHEMA.is_file() else VENDORED_SCHEMA
    return json.loads(path.read_text(encoding="utf-8"))


def args(command):
    return command if isinstance(command, list) else shlex.split(command)


def env(service):
    e = service.get("environment") or {}
    if isinstance(e, list):
        e = dict(item.split("=", 1) if "=" in item else (item, None) for item in e)
    return e


def dockerfile(service):
    build = service["build"]
    if isinstance(build, str):
        return ROOT / build / "Dockerfile"
    return ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


def instructions(path):
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n(?:[ \t]*#[^\n]*\n)*", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def pip_installs(path):
    runs = [rest for keyword, rest in instructions(path) if keyword == "RUN"]
    return [m.group(0) for run in runs for m in re.finditer(r"pip install[^;&|]*", run)]


def test_compose_file_matches_the_compose_specification(compose):
    validator = Draft7Validator(schema())
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


def test_vendored_schema_is_a_valid_schema_and_the_shared_one():
    vendored = json.loads(VENDORED_SCHEMA.read_text())
    Draft7Validator.check_schema(vendored)
    # Beside a checkout (as on CI) the shared copy exists: the vendored one must not drift.
    if SHARED_SCHEMA.is_file():
        assert vendored == json.loads(SHARED_SCHEMA.read_text())


def test_redis_persists_and_never_evicts(compose, services):
    redis = services["redis"]
    cmd = args(redis["command"])
    assert cmd[0] == "redis-server"
    flags = dict(zip(cmd[1::2], cmd[2::2]))
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] == "everysec"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert int(flags["--hz"]) >= 100
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in compose["volumes"]
    assert "redis-cli" in args(redis["healthcheck"]["test"])


def test_api_service(services):
    api = services["api"]
    assert args(api["command"]) == ["gunicorn", "-c", "api/gunicorn_conf.py", "api.app:create_app()"]
    assert env(api)["INFERQ_REDIS_URL"] == "redis://redis:6379/0"
    assert any(str(p).endswith(":8000") for p in api["ports"])
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "http://localhost:8000/healthz" in " ".join(args(api["healthcheck"]["test"]))


def test_api_image_installs_only_the_api_extra(services):
    path = dockerfile(services["api"])
    installs = pip_installs(path)
    assert installs, f"{path.name} installs nothing with pip"
    for cmd in installs:
        assert re.search(r"""['"]?\.\[api\]['"]?""", cmd), cmd
        assert not re.search(r"tensorflow|worker|gpu|cpu|celery", cmd, re.I), cmd
    text = path.read_text(encoding="utf-8")
    assert '! python -c "import tensorflow"' in text  # the build fails if TF gets in


def test_worker_image(services):
    path = dockerfile(services["worker-gpu0"])
    installs = " ".join(pip_installs(path))
    assert "[worker," in installs
    keywords = instructions(path)
    default_extra = [rest for k, rest in keywords if k == "ARG" and rest.startswith("INFERQ_TF_EXTRA")]
    assert default_extra == ["INFERQ_TF_EXTRA=gpu"]
    assert any(k == "USER" and not rest.startswith("root") for k, rest in keywords)
    cmd = [rest for k, rest in keywords if k == "CMD"][-1]
    assert "--pool" in json.loads(cmd) and "solo" in json.loads(cmd)


def packages_needed(entry: str) -> set[str]:
    """The project's top-level packages that module `entry` imports, directly or not."""
    ours = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    seen, todo = set(), [entry]
    while todo:
        module = todo.pop()
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = ROOT / module.replace(".", "/") / "__init__.py"
        if module in seen or not path.is_file():
            continue
        seen.add(module)
        todo += [n for n in imported(path) if n.split(".")[0] in ours]
    return {m.split(".")[0] for m in seen}


@pytest.mark.parametrize("name", ["api", "webhooks", "feeder", *WORKERS])
def test_dockerfiles_copy_the_code_their_process_imports(services, name):
    path = dockerfile(services[name])
    assert path.is_file(), path
    copied = {rest.split()[0].rstrip("/") for k, rest in instructions(path) if k == "COPY"}
    cmd = args(services[name]["command"])
    entry = cmd[cmd.index("-A") + 1] if "-A" in cmd else cmd[-1].split(":")[0]
    needed = packages_needed(entry)
    assert needed and needed <= copied, needed - copied
    assert {"pyproject.toml", "README.md"} <= {
        src for k, rest in instructions(path) if k == "COPY" for src in rest.split()[:-1]
    }
    # The code runs from /app: it is on the path without being installed.
    assert any(k == "ENV" and "PYTHONPATH=/app" in rest for k, rest in instructions(path))


def test_the_api_image_has_every_file_the_console_serves(services):
    from api.console import ASSETS_DIR, EXAMPLE_TYPES, EXAMPLES_DIR, TYPES

    path = dockerfile(services["api"])
    copies = [rest.split() for k, rest in instructions(path) if k == "COPY"]
    sources = [(src, copy[-1]) for copy in copies for src in copy[:-1]]
    served = [p for p in ASSETS_DIR.iterdir() if p.suffix in TYPES]
    served += [p for p in EXAMPLES_DIR.iterdir() if p.suffix in EXAMPLE_TYPES]
    assert served
    for file in served:
        rel = file.relative_to(ROOT)
        assert any(fnmatch.fnmatch(str(rel), src) or str(rel).startswith(src.rstrip("/") + "/")
                   for src, _ in sources), f"{path.name} does not copy {rel}"
    # Copied where api/console.py looks for them: beside api/ in /app.
    assert ("console", "./console") in sources
    assert any(src.startswith("examples/") and dest == "./examples/" for src, dest in sources)


@pytest.mark.parametrize("name", WORKERS)
def test_workers(services, name):
    w = services[name]
    # The `<<: *worker` merge resolved: the shared keys are present.
    cmd = args(w["command"])
    assert cmd[:4] == ["celery", "-A", "worker.app", "worker"]
    assert cmd[cmd.index("--pool") + 1] == "solo"
    e = env(w)
    assert e["INFERQ_REDIS_URL"] == "redis://redis:6379/0"
    assert e["INFERQ_MODEL_REPOSITORY"] == "/models"
    assert "models:/models:ro" in w["volumes"]
    assert w["depends_on"]["redis"]["condition"] == "service_healthy"
    assert w["depends_on"]["models-init"]["condition"] == "service_completed_successfully"
    assert w["restart"] == "unless-stopped"
    assert w["stop_signal"] == "SIGTERM"
    assert w["stop_grace_period"] == "60s"


def test_every_worker_like_service_is_checked(services):
    inference = {n for n, s in services.items()
                 if args(s.get("command", []))[:3] == ["celery", "-A", "worker.app"]}
    assert inference == set(WORKERS)


def test_worker_gpu0_reserves_gpu_0(services):
    w = services["worker-gpu0"]
    assert w["profiles"] == ["gpu"]
    assert env(w)["INFERQ_GPU"] == "0"
    devices = w["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]


def test_worker_cpu_has_no_gpu(services):
    w = services["worker-cpu"]
    assert w["profiles"] == ["cpu"]
    assert "deploy" not in w and "gpus" not in w and "devices" not in w
    assert w["build"]["args"]["INFERQ_TF_EXTRA"] == "cpu"
    assert "INFERQ_GPU" not in env(w)


def test_up_without_a_profile_starts_what_the_header_says(services):
    """`docker compose up -d` starts every service without a profile; the header says which."""
    unprofiled = {name for name, s in services.items() if "profiles" not in s}
    assert unprofiled == {"redis", "models-init", "api", "webhooks", "feeder"}
    header = (ROOT / "docker-compose.yml").read_text().split("\n\n")[0]
    [line] = [text for text in header.splitlines()
              if re.search(r"docker compose up -d\b(?! *--profile)", text)]
    said = line.split("#", 2)[2]
    assert all(word in said for word in ("Redis", "the API", "the webhook worker",
                                         "the feeder")), line
    assert "no inference worker" in said


def test_the_api_listens_on_every_interface_of_its_container(services):
    # make run listens on 127.0.0.1 (the default); inside compose's network the published
    # port has to reach the API.
    assert env(services["api"])["INFERQ_API_HOST"] == "0.0.0.0"
    image_env = " ".join(rest for k, rest in instructions(dockerfile(services["api"]))
                         if k == "ENV")
    assert "INFERQ_API_HOST=0.0.0.0" in image_env


def interpolate(text: str, variables: dict) -> str:
    """Compose's interpolation (`${VAR}`, `${VAR:-default}`, `${VAR-default}`, nested), as
    `docker compose config` would resolve it."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            name, op, default = re.match(r"(\w+)(?:(:?-)(.*))?$", text[i + 2:j - 1], re.S).groups()
            value = variables.get(name)
            if op and (value is None or (op == ":-" and value == "")):
                value = interpolate(default, variables)
            out.append(value or "")
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def test_interpolate_reads_nested_defaults_as_compose_does():
    assert interpolate("${A:-${B:-x}}", {}) == "x"
    assert interpolate("${A:-${B:-x}}", {"B": "b"}) == "b"
    assert interpolate("${A:-${B:-x}}/${C}", {"A": "a", "C": "c"}) == "a/c"
    assert interpolate("${A-x}", {"A": ""}) == "" and interpolate("$${A}", {}) == "${A}"


@pytest.mark.parametrize("variables,url,port", [
    ({}, "http://localhost:8000", "8000"),
    ({"INFERQ_API_PORT": "9000"}, "http://localhost:9000", "9000"),
    ({"INFERQ_API_PORT": "9000", "INFERQ_PUBLIC_URL": "https://inferq.example.com"},
     "https://inferq.example.com", "9000"),
])
def test_one_public_url_reaches_every_service_and_follows_the_port(services, variables, url,
                                                                   port):
    """Job URLs (API answers, webhook bodies) start with the same base, on the published port
    unless INFERQ_PUBLIC_URL says otherwise."""
    values = {name: env(s).get("INFERQ_PUBLIC_URL") for name, s in services.items()
              if name in ("api", "webhooks", *WORKERS)}
    assert len(set(values.values())) == 1, values
    assert interpolate(values["api"], variables) == url
    assert interpolate(services["api"]["ports"][0], variables) == f"{port}:8000"


def test_the_model_volume_is_shared_and_filled_from_models(compose, services):
    """Models live in a named volume (the API runs as UID 10001 and writes uploads into it);
    models-init fills it from ./models and hands it to that user before the API starts."""
    assert "models" in compose["volumes"]
    assert "models:/models" in services["api"]["volumes"]
    assert services["api"]["depends_on"]["models-init"]["condition"] == \
        "service_completed_successfully"
    for name in WORKERS:
        assert "models:/models:ro" in services[name]["volumes"]
    init = services["models-init"]
    assert {"./models:/seed:ro", "./docker/models-init.sh:/models-init.sh:ro",
            "models:/models"} <= set(init["volumes"])
    assert init["entrypoint"] == ["sh", "/models-init.sh"]
    assert init["restart"] == "no"
    # The images run as the user the volume is handed to.
    for name in ("api", *WORKERS):
        users = [rest for k, rest in instructions(dockerfile(services[name])) if k == "USER"]
        assert users[-1] == "10001:10001", name


def models_init(seed: Path, volume: Path):
    return subprocess.run(["sh", str(ROOT / "docker" / "models-init.sh")], text=True,
                          capture_output=True, timeout=60, check=True,
                          env={**os.environ, "SEED": str(seed), "MODELS": str(volume),
                               "OWNER": f"{os.getuid()}:{os.getgid()}"})


def test_models_init_adds_what_the_volume_lacks_and_changes_nothing_else(tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    first = models_init(ROOT / "models", volume)
    assert "models-init: added shapes/1" in first.stdout
    for path in (ROOT / "models").rglob("*"):
        copy = volume / path.relative_to(ROOT / "models")
        assert copy.exists(), copy
        if path.is_file():
            assert copy.read_bytes() == path.read_bytes()
    # An upload (a new model, a new version) and an edit in the volume stay as they are; a new
    # version in ./models is added, and nothing else is said.
    seed = tmp_path / "seed"
    subprocess.run(["cp", "-R", str(ROOT / "models"), str(seed)], check=True)
    (seed / "shapes" / "2").mkdir()
    (seed / "shapes" / "2" / "model.keras").write_bytes(b"v2")
    (seed / "shapes" / "config.json").write_text("{}")  # changed in ./models: not copied
    (volume / "uploaded" / "1").mkdir(parents=True)
    (volume / "games" / "config.json").write_text('{"edited": true}')
    second = models_init(seed, volume)
    assert second.stdout == "models-init: added shapes/2\n"
    assert (volume / "shapes" / "2" / "model.keras").read_bytes() == b"v2"
    assert (volume / "shapes" / "config.json").read_bytes() == \
        (ROOT / "models" / "shapes" / "config.json").read_bytes()
    assert (volume / "uploaded" / "1").is_dir()
    assert (volume / "games" / "config.json").read_text() == '{"edited": true}'
    assert not list(volume.rglob(".incoming-*"))


def test_dockerignore_keeps_what_the_images_need():
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "tests"} <= ignored
    assert not ignored & {"pyproject.toml", "README.md", "api", "worker", "webhooks", "jobs",
                          "batching", "console", "examples"}


def test_webhook_worker_service_is_light_and_shares_the_secret(services):
    hooks = services["webhooks"]
    assert args(hooks["command"])[:3] == ["celery", "-A", "webhooks.app"]
    assert hooks["environment"]["INFERQ_REDIS_URL"] == "redis://redis:6379/0"
    assert "INFERQ_WEBHOOK_SECRET" in hooks["environment"]
    assert "INFERQ_WEBHOOK_SECRET" in services["api"]["environment"]  # refuses hooks without
    dockerfile = ROOT / hooks["build"]["dockerfile"]
    assert [p.split() for p in pip_installs(dockerfile)] == [
        ["pip", "install", "--no-cache-dir", "'.[webhooks]'"]]
    assert '! python -c "import tensorflow"' in dockerfile.read_text()


def dotenv(path):
    pairs = [line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return {k.strip(): v.strip() for k, v in pairs}


def test_api_keys_come_from_dotenv_and_the_example_is_a_working_setup(services):
    """Compose interpolates ${VAR} from .env; .env.example sets every variable the compose file
    requires. Its keys are placeholders the API refuses until they are replaced; with keys
    made as it says, it is a setup the API accepts."""
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+)\?", text))
    assert "INFERQ_API_KEYS" in required
    example = dotenv(ROOT / ".env.example")
    assert required <= set(example)
    api = env(services["api"])
    for name in ("INFERQ_API_KEYS", "INFERQ_ADMIN_KEYS", "INFERQ_RATE_LIMIT_SUBMIT"):
        assert api[name].startswith("${" + name), name
    comments = (ROOT / ".env.example").read_text()
    assert "replace both placeholder keys" in comments and "refuses to start" in comments
    for name in ("INFERQ_API_KEYS", "INFERQ_ADMIN_KEYS"):
        keys = [pair.split("=")[0] for pair in example[name].split(",")]
        assert keys and all(key.startswith("change-me-") for key in keys), name
    # Left unset, the public URL follows the published port (see the compose file).
    assert "INFERQ_PUBLIC_URL" not in example and "INFERQ_API_PORT" not in example
    replaced = {name: re.sub(r"change-me-[\w-]+", lambda _: secrets.token_urlsafe(32), value)
                for name, value in example.items()}
    from api.auth import Keyring
    from api.limits import install
    from jobs.settings import load_settings
    from jobs.settings import SettingsError
    settings = load_settings(example)
    with pytest.raises(SettingsError, match="INFERQ_API_KEYS .*placeholder"):
        Keyring(settings.api_keys, settings.admin_keys)
    settings = load_settings(replaced)
    keyring = Keyring(settings.api_keys, settings.admin_keys)
    assert keyring.enabled
    install(__import__("flask").Flask("check"), settings)  # the limits parse
    # A .env holds secrets: never committed, never sent into an image.
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_the_api_and_the_feeder_share_the_batch_store(compose, services):
    for name in ("api", "feeder"):
        assert env(services[name])["INFERQ_BATCH_DIR"] == "/batches", name
        assert "batches:/batches" in services[name]["volumes"], name
    assert "batches" in compose["volumes"]
    # A new named volume takes the ownership of the image's directory: the images' user's.
    for name in ("api", "feeder"):
        text = dockerfile(services[name]).read_text()
        assert "chown 10001:10001 /batches" in text, name
    assert "profiles" not in services["feeder"]  # it starts with `docker compose up`


def test_flower_is_opt_in_behind_a_login_and_on_localhost(services):
    """`docker compose --profile monitoring up` adds Flower on the workers' broker; plain `up`
    does not start it, and nothing in the file requires its variable (Compose checks required
    variables of every service, whatever the profile). Its login has no default: the start
    script refuses to start without one (tests/test_flower.py)."""
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert env(flower)["INFERQ_REDIS_URL"] == services["webhooks"]["environment"][
        "INFERQ_REDIS_URL"] == env(services["worker-cpu"])["INFERQ_REDIS_URL"]
    auth = env(flower)["FLOWER_BASIC_AUTH"]
    assert interpolate(auth, {}) == ""
    assert interpolate(auth, {"FLOWER_BASIC_AUTH": "ops:pw"}) == "ops:pw"
    assert not re.search(r"\$\{FLOWER_BASIC_AUTH:?\?",
                         (ROOT / "docker-compose.yml").read_text())
    assert "FLOWER_BASIC_AUTH" not in dotenv(ROOT / ".env.example")  # no password to copy
    # Published on the host's loopback only, unless told otherwise.
    [port] = flower["ports"]
    assert interpolate(port, {}) == "127.0.0.1:5555:5555"
    assert interpolate(port, {"INFERQ_FLOWER_PUBLISH": "0.0.0.0:5556"}) == "0.0.0.0:5556:5555"
    assert flower["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "http://localhost:5555/healthcheck" in " ".join(args(flower["healthcheck"]["test"]))
    assert flower["restart"] == "unless-stopped"


def test_flower_image_runs_the_refusing_script_with_only_the_monitoring_extra(services):
    flower = services["flower"]
    path = dockerfile(flower)
    keywords = instructions(path)
    # The command runs the script the image copies in.
    copied = dict(rest.split() for k, rest in keywords if k == "COPY")
    assert args(flower["command"]) == ["sh", "/app/flower.sh"]
    assert copied["docker/flower.sh"] == "./flower.sh"
    assert any(k == "WORKDIR" and rest == "/app" for k, rest in keywords)
    assert json.loads([rest for k, rest in keywords if k == "CMD"][-1]) == args(flower["command"])
    # Only the extra's packages: no project install, no TensorFlow, NumPy or inferq code.
    run = " ".join(rest for k, rest in keywords if k == "RUN")
    assert "['optional-dependencies']['monitoring']" in run
    assert [p.split() for p in pip_installs(path)] == [
        ["pip", "install", "--no-cache-dir", "-r", "monitoring.txt"]]
    assert set(copied) == {"pyproject.toml", "docker/flower.sh"}
    assert '! python -c "import numpy"' in run
    import tomllib
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["monitoring"]
    assert any(req.startswith("flower>=2,<3") for req in extra)
    assert any(req.startswith("celery[redis]") for req in extra)  # the Redis transport
    users = [rest for k, rest in keywords if k == "USER"]
    assert users[-1] == "10001:10001"


SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
REDIS_USERS = ("api", "webhooks", "feeder", *WORKERS)


def test_the_ha_profile_adds_a_replica_and_three_sentinels_watching_redis(services):
    replica = services["redis-replica"]
    assert replica["profiles"] == ["ha"]
    cmd = args(replica["command"])
    assert cmd[cmd.index("--replicaof") + 1:cmd.index("--replicaof") + 3] == ["redis", "6379"]
    assert "noeviction" in cmd and replica["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in SENTINELS:
        sentinel = services[name]
        assert sentinel["profiles"] == ["ha"] and sentinel["hostname"] == name
        script = interpolate(" ".join(args(sentinel["command"])), {})
        # A quorum of 2 of the 3 watches `redis` under the name .env.example gives.
        assert "sentinel monitor inferq redis 6379 2" in script
        assert script.rstrip().endswith("--sentinel") and "port 26379" in script
    example = (ROOT / ".env.example").read_text()
    assert ("# INFERQ_REDIS_SENTINELS=" + ",".join(f"{s}:26379" for s in SENTINELS)) in example
    assert "# INFERQ_REDIS_MASTER=inferq" in example


@pytest.mark.parametrize("variables", [{}, {"INFERQ_REDIS_SENTINELS": "sentinel-1:26379",
                                            "INFERQ_REDIS_MASTER": "inferq"}])
def test_every_redis_user_takes_the_sentinel_settings_from_dotenv(services, variables):
    """Unset, every process uses `redis` as before; set in .env, every one asks the sentinels."""
    for name in REDIS_USERS:
        e = env(services[name])
        for var in ("INFERQ_REDIS_SENTINELS", "INFERQ_REDIS_MASTER"):
            assert interpolate(e[var], variables) == variables.get(var, ""), (name, var)
