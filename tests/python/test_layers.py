"""scripts/check_layers.py can fail: run on small made-up workspaces, it finds an import
circle (and only a real one), an upward dependency between crates, a file over 600 lines and a
function over 120, and passes a clean tree."""

import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_layers.py"


def workspace(tmp_path: Path, files: dict) -> Path:
    """A copy of the checker beside `crates/` holding `files` (path -> text)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "check_layers.py")
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return tmp_path


def check(root: Path, only: str):
    done = subprocess.run([sys.executable, str(root / "scripts" / "check_layers.py"), "--only", only],
                          capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


CORE_TOML = '[package]\nname = "basin-core"\n\n[dependencies]\n'
CATALOG_TOML = '[package]\nname = "basin-catalog"\n\n[dependencies]\nbasin-core = { path = "../basin-core" }\n'


def test_a_circle_is_found_with_the_lines_that_make_it(tmp_path):
    root = workspace(tmp_path, {
        "crates/basin-core/Cargo.toml": CORE_TOML,
        "crates/basin-core/src/lib.rs": "mod a;\nmod b;\n",
        "crates/basin-core/src/a.rs": "use crate::b::B;\npub struct A;\n",
        "crates/basin-core/src/b.rs": "pub struct B;\npub fn f() { let _ = crate::a::A; }\n",
    })
    code, out = check(root, "circles")
    assert code == 1, out
    assert "circle in basin-core: a, b" in out, out
    assert "crates/basin-core/src/a.rs:1" in out and "crates/basin-core/src/b.rs:2" in out, out


def test_reexports_and_test_modules_make_no_circle(tmp_path):
    root = workspace(tmp_path, {
        "crates/basin-core/Cargo.toml": CORE_TOML,
        # The root re-exports `A`; `b` names it through the root: an edge to `a`, not the root.
        "crates/basin-core/src/lib.rs": "mod a;\nmod b;\npub use a::A;\n",
        "crates/basin-core/src/a.rs": "pub struct A;\n#[cfg(test)]\nmod tests {\n    use crate::b::g;\n}\n",
        "crates/basin-core/src/b.rs": "use crate::A;\npub fn g() -> A { A }\n",
    })
    code, out = check(root, "circles")
    assert (code, out.strip()) == (0, "circles: none"), out


def test_a_crate_depending_on_a_higher_one_is_refused(tmp_path):
    root = workspace(tmp_path, {
        "crates/basin-core/Cargo.toml": CORE_TOML + 'basin-catalog = { path = "../basin-catalog" }\n',
        "crates/basin-core/src/lib.rs": "",
        "crates/basin-catalog/Cargo.toml": CATALOG_TOML,
        "crates/basin-catalog/src/lib.rs": "",
    })
    code, out = check(root, "crates")
    assert code == 1 and "basin-core" in out and "basin-catalog" in out, out


def test_long_files_and_long_functions_are_named(tmp_path):
    body = "".join(f"    let x{i} = {i};\n" for i in range(125))
    root = workspace(tmp_path, {
        "crates/basin-core/Cargo.toml": CORE_TOML,
        "crates/basin-core/src/lib.rs": "mod long;\nmod big;\n",
        "crates/basin-core/src/long.rs": f"pub fn long() {{\n{body}}}\n",
        "crates/basin-core/src/big.rs": "// a line\n" * 601,
    })
    code, out = check(root, "sizes")
    assert code == 1, out
    assert "crates/basin-core/src/big.rs: file is 601 lines" in out, out
    assert "crates/basin-core/src/long.rs:1: fn long is 127 lines" in out, out
