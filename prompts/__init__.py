"""Prompt files (Chinese), each with a version id in its front matter; loaded by triage.drafting."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_FRONT = re.compile(r"\A---\n(.*?)\n---\n", re.S)
_SECTION = re.compile(r"^## (\w+)\s*$", re.M)
_VAR = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    sections: dict[str, str]

    def render(self, section: str, **values: str) -> str:
        """Fill {{name}} placeholders; a missing value is an error, never a silent blank."""
        template = self.sections[section]

        def fill(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in values:
                raise KeyError(f"prompt {self.name}/{section} needs a value for '{key}'")
            return values[key]

        return _VAR.sub(fill, template).strip()


@cache
def load(name: str) -> Prompt:
    """Load prompts/<name>.md: front matter with `version`, then `## section` blocks."""
    text = (resources.files("prompts") / f"{name}.md").read_text(encoding="utf-8")
    front = _FRONT.match(text)
    if front is None:
        raise ValueError(f"prompt {name} has no front matter")
    meta = dict(line.split(":", 1) for line in front.group(1).splitlines() if ":" in line)
    version = meta.get("version", "").strip()
    if not version:
        raise ValueError(f"prompt {name} has no version")
    body = text[front.end() :]
    parts = _SECTION.split(body)
    sections = {parts[i]: parts[i + 1].strip("\n") for i in range(1, len(parts) - 1, 2)}
    return Prompt(name=name, version=version, sections=sections)
