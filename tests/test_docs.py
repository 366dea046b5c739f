"""The documentation works: the README's Python example runs, every relative link and anchor
in README.md and docs/*.md resolves inside the repository, every `mlepi` command has its
section in docs/cli.md, and nothing in the repository points outside it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_example(heading: str = "Python") -> str:
    """The first fenced ```python block under the README's "## <heading>" heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert match, f"no ```python block under the README's {heading} heading"
    return match.group(1)


def run_example(code: str, cwd: Path) -> subprocess.CompletedProcess:
    script = cwd / "example.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=1200)


def test_the_python_example_is_short():
    assert len(python_example().strip().splitlines()) <= 20


@pytest.mark.integration
def test_the_readme_python_example_runs_and_prints_vf(tmp_path):
    """The example as a user would run it, in a fresh process and an empty directory."""
    done = run_example(python_example(), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    values = [float(v) for v in re.findall(r"v_F = (\d+\.\d+) ± \d+\.\d+", done.stdout)]
    assert values, done.stdout
    # 8 samples of the 6x6 AB bilayer at 300 K: v_F near the 200-sample 0.6567 (10^6 m/s), well
    # below the static lattice's 0.715 and far from any unit slip
    assert all(0.55 < v < 0.72 for v in values), values
    assert "8 samples" in done.stdout.splitlines()[-1]
    assert (tmp_path / "ab_300K" / "results.json").is_file()


@pytest.mark.integration
def test_the_readme_ase_example_runs(tmp_path):
    """The README's MLEPICalculator example: an energy in eV, then an ASE relaxation."""
    done = run_example(python_example("The ASE calculator"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    energy = float(done.stdout.splitlines()[0])
    assert -8.0 < energy / 64 < -7.0, energy  # eV per carbon atom of the 4x4 AB bilayer
    assert "BFGS" in done.stdout


# -- links and anchors ------------------------------------------------------------------

def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, markup and punctuation
    dropped (letters, digits, '_', '-' and spaces kept), spaces turned into '-'."""
    text = re.sub(r"`|\*\*?|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip()).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page (repeated headings get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        match = re.match(r"#{1,6} (.*)", line)
        if match:
            base = github_anchor(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    """The targets of a page's Markdown links and images, outside code blocks and spans."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_anchor_rule_is_githubs():
    assert github_anchor("Electrons for twisted bilayers: the Slater–Koster p_z model") == \
        "electrons-for-twisted-bilayers-the-slaterkoster-p_z-model"
    assert github_anchor("### `mlepi mc`".lstrip("# ")) == "mlepi-mc"
    assert github_anchor('What "fast" means') == "what-fast-means"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
    assert page.is_file()
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:: not ours to check offline
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if ROOT not in file.parents and file != ROOT:
            broken.append(f"{target} (outside the repository)")
        elif not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_docs_map_lists_every_page():
    index = (ROOT / "docs" / "index.md").read_text()
    missing = [p.name for p in PAGES[1:] if p.name != "index.md" and f"]({p.name})" not in index]
    assert not missing, f"docs/index.md does not link {missing}"


def test_every_command_has_its_section_in_the_cli_page():
    """docs/cli.md's flag lists come from `scripts/cli_docs.py`; a new command without
    its section there fails here (run the script again)."""
    from mlepi_core.cli.parser import make_parser

    page = (ROOT / "docs" / "cli.md").read_text()
    parser = make_parser()
    commands = next(a for a in parser._actions if hasattr(a, "choices") and a.choices).choices
    missing = [name for name in commands if f"### `mlepi {name}`" not in page]
    assert not missing, f"docs/cli.md has no section for {missing}: run scripts/cli_docs.py"


# -- nothing points outside the repository --------------------------------------------

OUTSIDE = ("DESIGN" + ".md", "../" + "shared")  # spelt apart so that this file does not match itself
SKIPPED = ("runs/", "data/", ".venv/", "build/")


def repository_files() -> list[Path]:
    """The repository's files: tracked or untracked-but-not-ignored, as git lists them."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, text=True)
    if listed.returncode:
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.stdout.split("\0")
            if name and not name.startswith(SKIPPED) and (ROOT / name).is_file()]


def test_nothing_cites_a_file_outside_the_repository():
    """Code, tests, configs, docs and scripts cite docs/physics.md (or the paper's equations),
    never the team's design notes beside the repository."""
    offenders = []
    for path in repository_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue  # figures, weights, archives
        for number, line in enumerate(text.splitlines(), 1):
            if any(word in line for word in OUTSIDE):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not offenders, "references outside the repository:\n" + "\n".join(offenders)


def test_every_citation_of_the_docs_resolves():
    """Docstrings and comments cite `docs/<page>.md#<anchor>`: each page and heading exists."""
    broken = []
    for path in repository_files():
        if path.suffix not in (".py", ".yaml", ".yml", ".sh", ".toml", ".cfg", ".txt") and path.name != "run":
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for page, anchor in re.findall(r"docs/([\w-]+\.md)(?:#([\w-]+))?", text):
            file = ROOT / "docs" / page
            if not file.is_file() or (anchor and anchor not in anchors(file)):
                broken.append(f"{path.relative_to(ROOT)}: docs/{page}#{anchor}")
    assert not broken, "citations that do not resolve:\n" + "\n".join(broken)
