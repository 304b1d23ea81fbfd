#!/usr/bin/env python3
"""The quick build shares every dependency with the full one.

`scripts/demo.sh` builds `basin` without its default features (no Ballista, no Postgres wire
door): the first build on 2 cores is minutes shorter. Left alone, Cargo would also build
the dependencies the two builds share with other features (Ballista turns on arrow's IPC
compression, hyper's HTTP/2, ...), so after both builds every one of them exists twice and
the second build of a checkout takes as long as the first. The feature pins in
crates/basin-cli/Cargo.toml keep the two feature sets equal; this check fails, naming the
package and the features to pin, when a dependency update makes them differ again.
"""

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def features(*extra: str) -> dict[str, set[frozenset[str]]]:
    """Package -> the feature sets it is built with (a package built for the host and for
    the target may have two)."""
    out = subprocess.run(
        ["cargo", "tree", "-p", "basin", "-e", "normal,build", "--prefix", "none",
         "--format", "{p}|{f}", *extra],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    found: dict[str, set[frozenset[str]]] = defaultdict(set)
    for line in out.splitlines():
        package, _, feats = line.replace(" (*)", "").partition("|")
        if "(/" in package:  # Basin's own crates: their features are what differs
            continue
        found[package.strip()].add(frozenset(f for f in feats.split(",") if f))
    return found


def show(sets: set[frozenset[str]]) -> str:
    return " and ".join("[" + ",".join(sorted(s)) + "]" for s in sorted(sets, key=sorted))


def main() -> int:
    full = features()
    quick = features("--no-default-features")
    wrong = []
    for package, sets in sorted(quick.items()):
        # A set the full build does not build is a second build of the package. (The full
        # build may build more: host builds of packages only its build scripts use.)
        if not sets <= full.get(package, sets):
            wrong.append(f"  {package}: {show(sets)}, the full build {show(full[package])}")
    if wrong:
        print("the quick build (--no-default-features) builds these dependencies with other "
              "features than the full build, so it would build them twice:", file=sys.stderr)
        print("\n".join(wrong), file=sys.stderr)
        print("hint: pin the features in crates/basin-cli/Cargo.toml's feature pins "
              "(a [build-dependencies] pin for crates built for the host, such as syn)",
              file=sys.stderr)
        return 1
    print(f"the quick build shares all {len(quick)} of its dependencies with the full build",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
