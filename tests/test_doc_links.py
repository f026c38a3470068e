"""Links between the docs land on a heading that exists: a section retitled without its links
updated sends a reader to the top of the page instead of the finding."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\((?P<target>[\w./-]*\.md)?#(?P<anchor>[\w-]+)\)")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped (hyphens and
    underscores kept), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(documents: list[Path]) -> list[str]:
    """'file: #anchor (in target)' for each in-repository link whose anchor names no heading."""
    broken = []
    for document in documents:
        for link in LINK.finditer(document.read_text()):
            target = (document.parent / link["target"]).resolve() if link["target"] else document.resolve()
            headings = {github_anchor(h) for h in re.findall(r"^#+ (.*)$", target.read_text(), re.M)} if target.exists() else set()
            if link["anchor"] not in headings:
                broken.append(f"{document.relative_to(ROOT) if document.is_relative_to(ROOT) else document.name}: "
                              f"#{link['anchor']} (in {target.name}{'' if target.exists() else ', missing'})")
    return broken


def test_every_link_between_the_docs_names_an_existing_heading():
    assert broken_links([ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]) == []


def test_a_link_to_a_retitled_section_is_reported(tmp_path):
    (tmp_path / "findings.md").write_text("# Findings\n\n## How many hops at one to four layers\n")
    readme = tmp_path / "README.md"
    readme.write_text("[ok](findings.md#how-many-hops-at-one-to-four-layers) "
                      "[stale](findings.md#how-many-hops-at-one-and-two-layers) [top](#findings)\n# Findings\n")
    assert broken_links([readme]) == ["README.md: #how-many-hops-at-one-and-two-layers (in findings.md)"]
    assert github_anchor("A forward solver of G(2,4,50): Mamba, next-token, `=`") == "a-forward-solver-of-g2450-mamba-next-token-"
