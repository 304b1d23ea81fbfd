"""Basin installed like a user installs it: the wheel `scripts/dist.sh` builds (from the dev
profile here, to keep CI fast; docs/benchmarks.md measures the dist wheel) goes into a fresh
virtual environment in a fresh folder, and `basin` and `import basin` run from there with
nothing of the checkout on PATH or PYTHONPATH."""

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def user_env(tmp: Path) -> dict:
    """A new user's environment (bench/install.py says what it keeps)."""
    spec = importlib.util.spec_from_file_location("bench_install", ROOT / "bench" / "install.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.user_env(tmp)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the environment's bin folder, a clean env): the dev wheel installed into a new venv."""
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run([str(ROOT / "scripts" / "dist.sh"), "--profile", "dev", "--out", str(dist)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    wheels = list(dist.glob("basin_lakehouse-*.whl"))
    assert len(wheels) == 1, built.stdout
    # The table dist.sh prints names each artifact with its sha256.
    assert wheels[0].name in built.stdout and "sha256" in built.stdout, built.stdout
    assert list(dist.glob("basin-*-linux.tar.gz")), built.stdout

    user = tmp_path_factory.mktemp("user")
    env = user_env(user)
    subprocess.run([sys.executable, "-m", "venv", str(user / "venv")], check=True, env=env)
    pip = subprocess.run([str(user / "venv" / "bin" / "pip"), "install", "--quiet",
                          "--disable-pip-version-check", str(wheels[0])],
                         capture_output=True, text=True, env=env, cwd=user)
    assert pip.returncode == 0, pip.stderr
    return user / "venv" / "bin", env, wheels[0]


def test_the_wheel_holds_the_binary_the_sdk_and_the_licence(installed):
    _, _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".data/scripts/basin") for n in names), names
    assert "basin/__init__.py" in names and "basin/decorators.py" in names, names
    assert any(n.endswith("dist-info/licenses/LICENSE") for n in names), names
    # Tagged for the glibc policy the binary meets, never the plain `linux` tag PyPI refuses.
    assert "manylinux_" in wheel.name, wheel.name


def test_basin_and_import_basin_run_from_the_environment(installed, tmp_path):
    bin_dir, env, _ = installed
    version = subprocess.run([str(bin_dir / "basin"), "--version"], capture_output=True, text=True,
                             env=env, cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("basin "), version.stdout

    imported = subprocess.run([str(bin_dir / "python"), "-c", "import basin; print(basin.__file__)"],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(str(bin_dir.parent)), imported.stdout


def test_the_demo_runs_from_the_installed_binary(installed, tmp_path):
    bin_dir, env, _ = installed
    demo = subprocess.run([str(bin_dir / "basin"), "demo"], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-3000:]
    # The demo's last query: revenue by nation and year, read from the merged pipeline output.
    assert "JAPAN" in demo.stdout and "1998" in demo.stdout, demo.stdout[-2000:]
    # Then the commit graph of its branches: main's head drawn first.
    graph = [line for line in demo.stdout.splitlines() if line.startswith("* ")]
    assert graph and "main" in graph[0], demo.stdout[-2000:]


def test_a_function_importing_the_sdk_runs_with_uv_from_the_wheel(installed, tmp_path):
    """`uv` is not on PATH: the runtime finds the one the wheel installed beside `basin`."""
    bin_dir, env, _ = installed
    basin = str(bin_dir / "basin")
    home = tmp_path / "shop"

    def run(*args):
        done = subprocess.run([basin, "--home", str(home), *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path)
        assert done.returncode == 0, f"basin {' '.join(args)}:\n{done.stderr[-3000:]}"
        return done

    run("init", str(home))
    (tmp_path / "orders.csv").write_text("id,amount\n1,10.50\n2,3.25\n3,99.00\n")
    run("import", str(tmp_path / "orders.csv"), "--table", "sales.orders")
    (tmp_path / "functions.py").write_text(
        "import basin\n\n"
        "@basin.python(\"3.11\")\n"
        "def big(orders=basin.Model(\"sales.orders\", filter=\"amount > 5\")):\n"
        "    print(f\"sdk {basin.__version__}\")\n"
        "    return orders\n"
    )
    done = run("invoke", str(tmp_path / "functions.py") + ":big", "--format", "csv")
    assert sorted(done.stdout.splitlines()[1:]) == ["1,10.50", "3,99.00"], done.stdout
    assert "sdk 0.1.0" in done.stderr, done.stderr[-2000:]
    tools = Path(env["HOME"]) / ".cache" / "basin" / "tools"
    assert not (tools / "uv").exists(), "Basin installed its own uv instead of using the wheel's"


def test_uv_tool_install_puts_basin_on_path_with_uv_beside_it(installed, tmp_path):
    """`uv tool install` links `basin` into ~/.local/bin; the binary, followed through that
    link, still finds the `uv` its tool environment holds."""
    _, _, wheel = installed
    env = user_env(tmp_path)
    uv = Path(sys.executable).parent / "uv"  # the test clients' uv, only to install with
    done = subprocess.run([str(uv), "tool", "install", str(wheel)], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    linked = Path(env["HOME"]) / ".local" / "bin" / "basin"
    assert linked.is_symlink() or linked.is_file(), done.stderr
    version = subprocess.run([str(linked), "--version"], capture_output=True, text=True, env=env,
                             cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("basin "), version
    # The tool environment's own uv, beside the real binary, is what Basin will build with.
    assert (linked.resolve().parent / "uv").is_file(), sorted(p.name for p in linked.resolve().parent.iterdir())
