"""Docker's `.dockerignore` rules, applied to a directory: what a build would send as context.

A small exact rendering of Docker's own matcher (moby's patternmatcher and ignorefile):
- a line starting with `#` is a comment; blank lines are skipped; `!` makes an exception;
- each pattern is cleaned like a path (`./a//b/` is `a/b`) and a leading `/` dropped, so
  patterns are anchored at the context's root: `var` is `./var`, never `app/var`;
- `*` is any run of characters but `/`, `?` one such character, `[...]` a class, `\\` escapes,
  `**` any number of directories (none included), `**/` at the start any depth;
- a path is excluded when a pattern matches it or one of its parent directories; the last
  pattern that decides wins, so `!keep` after `*.md` keeps `keep`.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

# Characters that mean something to a regular expression but nothing to Docker's patterns
# (`^` is left as is, as Docker does: it negates a class, `[^a]`).
_LITERAL_SPECIALS = ".+()|{}$"


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]

    def matches(self, path: str) -> bool:
        return self.regex.fullmatch(path) is not None


def _clean(pattern: str) -> str:
    """Go's filepath.Clean then ToSlash, with the leading `/` of an absolute pattern dropped."""
    cleaned = posixpath.normpath(pattern)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if len(cleaned) > 1 and cleaned.startswith("/"):
        cleaned = cleaned[1:]
    return cleaned


def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1  # `**/` is `**`
            # At the end `**` takes everything; elsewhere any number of whole directories.
            out.append(".*" if i == len(pattern) else "(.*/)?")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "\\":
            out.append(re.escape(ch))
        elif ch in "[]":
            out.append(ch)
        elif ch in _LITERAL_SPECIALS:
            out.append("\\" + ch)
        else:
            out.append(re.escape(ch) if not ch.isalnum() and ch not in "/-_" else ch)
        i += 1
    return re.compile("".join(out), re.DOTALL)


def parse(text: str) -> list[Pattern]:
    """The patterns of a `.dockerignore` file, in order."""
    patterns = []
    for position, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if position == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        cleaned = _clean(line) if line else line
        patterns.append(Pattern(cleaned, exclusion, _compile(cleaned)))
    return patterns


def is_excluded(path: str, patterns: list[Pattern]) -> bool:
    """Whether Docker leaves `path` (relative to the context, with `/`) out of the context."""
    path = posixpath.normpath(path)
    parts = path.split("/")
    parents = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    excluded = False
    for pattern in patterns:
        # An exception only matters once excluded; an exclusion only while included.
        if pattern.exclusion != excluded:
            continue
        if pattern.matches(path) or any(pattern.matches(parent) for parent in parents):
            excluded = not pattern.exclusion
    return excluded


def build_context(root: Path, patterns: list[Pattern] | None = None) -> list[str]:
    """The files (and links, sent as links) under `root` that a build sends, as relative
    paths with `/`, sorted. Without `patterns`, `root/.dockerignore` is read."""
    if patterns is None:
        ignore_file = root / ".dockerignore"
        patterns = parse(ignore_file.read_text(encoding="utf-8")) if ignore_file.exists() else []
    # Without exceptions nothing under an excluded directory can come back: skip it whole.
    prune = not any(pattern.exclusion for pattern in patterns)
    sent = []
    for directory, dirnames, filenames in os.walk(root):
        base = Path(directory).relative_to(root)
        for name in list(dirnames):
            relative = (base / name).as_posix()
            if Path(directory, name).is_symlink():
                dirnames.remove(name)
                filenames.append(name)
            elif prune and is_excluded(relative, patterns):
                dirnames.remove(name)
        for name in filenames:
            relative = (base / name).as_posix()
            if not is_excluded(relative, patterns):
                sent.append(relative)
    return sorted(sent)
