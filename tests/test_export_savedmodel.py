"""`python -m demo.export_savedmodel`, the README's first step, runs again without harm: an
export already at --out that reproduces the model is left in place; anything else at --out
is refused with a message; --overwrite exports again."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from stack.processes import ROOT


def export(*args):
    return subprocess.run([sys.executable, "-m", "demo.export_savedmodel", *args], cwd=ROOT,
                          text=True, capture_output=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + f.read_bytes())
    return h.hexdigest()


def test_rerun_leaves_the_shipped_export_in_place():
    shipped = ROOT / "models" / "shapes-sm"
    before = digest(shipped)
    done = export()
    assert done.returncode == 0, done.stderr
    assert ("models/shapes-sm/1 is already an export of models/shapes/1/model.keras"
            in done.stdout and "left in place" in done.stdout)
    assert digest(shipped) == before


def test_something_else_at_out_is_refused_and_overwrite_replaces_it(tmp_path):
    out = tmp_path / "shapes-sm" / "1"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("not a model")
    done = export("--out", str(out))
    assert done.returncode == 2
    assert f"{out} exists and is not an export of models/shapes/1/model.keras" in done.stderr
    assert "--overwrite to replace it" in done.stderr and "Traceback" not in done.stderr
    assert (out / "notes.txt").exists()

    done = export("--out", str(out), "--overwrite")
    assert done.returncode == 0, done.stderr
    assert f"exported models/shapes/1/model.keras -> {out}" in done.stdout
    assert (out / "saved_model.pb").is_file() and not (out / "notes.txt").exists()
    assert (out.parent / "config.json").read_bytes() == \
        (ROOT / "models" / "shapes" / "config.json").read_bytes()
