"""bench/RESULTS.md: each benchmark owns one "## …" section and replaces it in place (the others stay)."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nFigures, not pass/fail tests.\n\n"


def write_section(section: str, block: str, path: Path = RESULTS) -> Path:
    """Replace the section titled `section` (a "## …" line) with `block`, or append it."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    if section in text:
        start = text.index(section)
        end = text.find("\n## ", start + len(section))
        text = text[:start] + block.rstrip("\n") + "\n" + (text[end:] if end != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + block.rstrip("\n") + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def publish(section: str, block: str, *, write: bool = True, path: Path = RESULTS) -> None:
    """What every benchmark does with its figures: print them, and (unless --no-write) put them in their section
    of bench/RESULTS.md, saying so on stderr."""
    import sys

    print(block)
    if write:
        write_section(section, block, path)
        print(f"written to {path}", file=sys.stderr)
