"""The documentation's links: every relative link names a file that exists, and every
`#anchor` a heading of that file (as GitHub makes anchors of headings)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "bench" / "README.md",
    ROOT / "sdk" / "README.md",
    *(ROOT / "docs").glob("*.md"),
]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _anchors(document: Path) -> set[str]:
    """GitHub's anchors: the heading in lower case, punctuation dropped, spaces as hyphens,
    a repeated heading numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", FENCE.sub("", document.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _broken_links(document: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", document.read_text())):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no such heading in {linked.relative_to(ROOT)}")
    return broken


def test_every_link_in_the_docs_leads_somewhere():
    assert len(DOCUMENTS) > 10
    broken = {str(d.relative_to(ROOT)): _broken_links(d) for d in DOCUMENTS}
    assert {name: links for name, links in broken.items() if links} == {}


def test_the_anchor_rule_follows_githubs():
    # "## Background jobs (`groups/jobs.py`)": GitHub drops the backticks, brackets, slash and dot.
    sample = ROOT / "docs" / "architecture.md"
    assert "background-jobs-groupsjobspy" in _anchors(sample)
