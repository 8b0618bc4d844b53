"""The knowledge base: departments (the routing taxonomy) and typical problems, loaded from files.

Nothing here knows about Shanghai: the built-in files under triage/data/kb are one taxonomy among
many, replaceable with `triage kb load --departments FILE [--problems FILE]`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from triage.errors import KnowledgeBaseError, UnknownDepartmentError
from triage.models import Department, TypicalProblem


@dataclass
class KnowledgeBase:
    departments: list[Department]
    problems: list[TypicalProblem] = field(default_factory=list)
    version: str = "custom"

    def __post_init__(self) -> None:
        self._validate()
        self.by_name = {d.name: d for d in self.departments}
        self.problems_by_id = {p.id: p for p in self.problems}
        self._alias: dict[str, str] = {}
        for d in self.departments:
            for alias in (d.name, d.full_name, *d.aliases):
                if alias:
                    self._alias.setdefault(alias, d.name)

    def _validate(self) -> None:
        if not self.departments:
            raise KnowledgeBaseError("the knowledge base needs at least one department")
        names = [d.name for d in self.departments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise KnowledgeBaseError(f"duplicate department names: {', '.join(dupes)}")
        ids = [p.id for p in self.problems]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise KnowledgeBaseError(f"duplicate typical problem ids: {', '.join(dupes)}")
        known = set(names)
        for p in self.problems:
            if p.department not in known:
                raise KnowledgeBaseError(
                    f"typical problem {p.id}: department '{p.department}' is not in the departments file"
                )

    @property
    def department_names(self) -> list[str]:
        return [d.name for d in self.departments]

    def resolve_department(self, name: str) -> str | None:
        """Canonical name for a name, full name or alias; None when unknown."""
        return self._alias.get(name.strip())

    def check_department(self, name: str, *, field: str = "department") -> str:
        """Canonical name for a name, full name or alias; UnknownDepartmentError naming `field` otherwise."""
        canonical = self.resolve_department(name)
        if canonical is None:
            raise UnknownDepartmentError(name, self.department_names, field=field)
        return canonical

    def service_items(self) -> set[str]:
        return {item for p in self.problems for item in p.service_items}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "departments": [d.model_dump() for d in self.departments],
            "problems": [p.model_dump(mode="json") for p in self.problems],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KnowledgeBase:
        return cls(
            departments=[Department.model_validate(d) for d in data["departments"]],
            problems=[TypicalProblem.model_validate(p) for p in data.get("problems", [])],
            version=str(data.get("version", "custom")),
        )


def _read_structured(path: Path) -> Any:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KnowledgeBaseError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise KnowledgeBaseError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(raw)
        return yaml.safe_load(raw)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise KnowledgeBaseError(f"{path}: cannot parse: {exc}") from None


def _entries(data: Any, key: str, path: Path) -> tuple[list[dict[str, Any]], str | None]:
    version = None
    if isinstance(data, dict):
        version = str(data["version"]) if "version" in data else None
        data = data.get(key)
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise KnowledgeBaseError(f"{path}: expected a list of {key} (or a mapping with a '{key}' list)")
    return data, version


def _parse(entries: Iterable[dict[str, Any]], model: type[Any], path: Path, kind: str) -> list[Any]:
    out = []
    for i, entry in enumerate(entries, start=1):
        if kind == "departments" and "scope" not in entry and "description" in entry:
            entry = {**entry, "scope": entry["description"]}
            entry.pop("description")
        try:
            out.append(model.model_validate(entry))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise KnowledgeBaseError(f"{path}: {kind} entry {i}: field '{loc}': {err['msg']}") from None
    return out


def load_files(departments: Path, problems: Path | None = None) -> KnowledgeBase:
    """Load a knowledge base from a departments file and an optional typical-problems file (YAML/JSON)."""
    dep_entries, version = _entries(_read_structured(departments), "departments", departments)
    deps = _parse(dep_entries, Department, departments, "departments")
    probs: list[TypicalProblem] = []
    if problems is not None:
        prob_entries, _ = _entries(_read_structured(problems), "problems", problems)
        probs = _parse(prob_entries, TypicalProblem, problems, "problems")
    return KnowledgeBase(departments=deps, problems=probs, version=version or departments.stem)


def builtin() -> KnowledgeBase:
    """The built-in Shanghai knowledge base shipped with the package."""
    root = resources.files("triage") / "data" / "kb"
    with (
        resources.as_file(root / "departments.yaml") as deps,
        resources.as_file(root / "problems.yaml") as probs,
    ):
        return load_files(Path(deps), Path(probs))
