"""Department scores from what the workspace knows: the knowledge base, its history, the neighbours.

Three signals, each a probability over departments, mixed with fixed weights:
- a linear SVM on character n-gram TF-IDF (precise on vocabulary seen in history);
- logistic regression on the LSA vectors (generalises from few examples: LSA is fitted on all the
  workspace's text, labelled or not);
- a similarity-weighted vote of the retrieved past cases and typical problems.
Both classifiers train on the knowledge base (department scopes and aliases, typical problems) plus
every history case, so a workspace routes with no history at all and improves as history grows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from triage.knowledge import KnowledgeBase
from triage.models import DepartmentScore
from vectorstore import Hit, TextModel
from vectorstore.embedders import SparseMatrix

Array = NDArray[np.float64]
WEIGHTS = {"svm": 0.4, "lsa": 0.3, "knn": 0.3}
SVM_TEMPERATURE = 0.25


def kb_training_docs(kb: KnowledgeBase) -> list[tuple[str, str]]:
    """(text, department) pairs that describe each department in the knowledge base's own words."""
    docs = []
    for d in kb.departments:
        names = "、".join([d.name, *([d.full_name] if d.full_name else []), *d.aliases])
        docs.append((f"{names}。{d.scope}", d.name))
    for p in kb.problems:
        docs.append((p.search_text(), p.department))
    return docs


def _linear(x: SparseMatrix | NDArray[np.float32], model: LinearSVC | LogisticRegression) -> Array:
    """decision_function of a fitted linear model, as an (n, classes) array."""
    scores = np.asarray(x @ model.coef_.T) + model.intercept_
    if scores.shape[1] == 1:  # binary models keep one column: score of classes_[1]
        scores = np.hstack([-scores, scores])
    return np.asarray(scores, dtype=np.float64)


def _softmax(scores: Array, temperature: float) -> Array:
    e = np.exp((scores - scores.max(axis=1, keepdims=True)) / temperature)
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


@dataclass
class RoutingResult:
    top: list[DepartmentScore]
    department: str
    confidence: float


class Router:
    """Scores departments for complaints; trained by `Router.train`, saved with joblib."""

    def __init__(
        self,
        departments: Sequence[str],
        svm: LinearSVC | None,
        lsa: LogisticRegression | None,
        fingerprint: str,
        n_history: int,
    ) -> None:
        self.departments = list(departments)
        self._index = {d: i for i, d in enumerate(self.departments)}
        self.svm = svm
        self.lsa = lsa
        self.fingerprint = fingerprint
        self.n_history = n_history

    @classmethod
    def train(cls, *, kb: KnowledgeBase, model: TextModel, history: Sequence[tuple[str, str]]) -> Router:
        docs = kb_training_docs(kb) + [(t, d) for t, d in history if d in kb.by_name]
        texts = [t for t, _ in docs]
        labels = np.array([d for _, d in docs])
        x = model.sparse(texts)
        z = model.dense_from_sparse(x)
        svm = lsa = None
        if len(set(labels)) >= 2:
            svm = LinearSVC(C=0.5, class_weight="balanced").fit(x, labels)
            lsa = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced").fit(z, labels)
        digest = hashlib.sha256(model.fingerprint.encode())
        digest.update("\n".join(kb.department_names).encode())
        digest.update(str(len(docs)).encode())
        return cls(kb.department_names, svm, lsa, f"router:{digest.hexdigest()[:12]}", len(history))

    def _spread(self, classes: Sequence[str], probs: Array) -> Array:
        out = np.zeros((probs.shape[0], len(self.departments)))
        for j, c in enumerate(classes):
            i = self._index.get(str(c))
            if i is not None:
                out[:, i] = probs[:, j]
        return out

    def _knn(self, case_hits: Sequence[Hit], problem_hits: Sequence[Hit]) -> Array | None:
        votes = np.zeros(len(self.departments))
        for hits, weight in ((case_hits, 1.0), (problem_hits, 0.5)):
            for h in hits:
                i = self._index.get(str(h.metadata.get("department")))
                if i is not None:
                    votes[i] += weight * h.similarity**2
        total = votes.sum()
        return votes / total if total > 0 else None

    def route(
        self,
        x: SparseMatrix,
        z: NDArray[np.float32],
        case_hits: Sequence[Sequence[Hit]],
        problem_hits: Sequence[Sequence[Hit]],
    ) -> list[RoutingResult]:
        """One result per row of x / z, with the matching neighbour lists."""
        n = x.shape[0]
        parts: dict[str, Array | None] = {"svm": None, "lsa": None}
        if self.svm is not None and self.lsa is not None:
            # The linear models' own decision functions, without sklearn's per-call input checks
            # (which cost more than the arithmetic for one complaint).
            parts["svm"] = self._spread(self.svm.classes_, _softmax(_linear(x, self.svm), SVM_TEMPERATURE))
            parts["lsa"] = self._spread(self.lsa.classes_, _softmax(_linear(z, self.lsa), 1.0))
        results = []
        for row in range(n):
            mix = np.zeros(len(self.departments))
            total_w = 0.0
            for name in ("svm", "lsa"):
                part = parts[name]
                if part is not None:
                    mix += WEIGHTS[name] * part[row]
                    total_w += WEIGHTS[name]
            knn = self._knn(case_hits[row], problem_hits[row])
            if knn is not None:
                mix += WEIGHTS["knn"] * knn
                total_w += WEIGHTS["knn"]
            if total_w == 0:  # a single-department taxonomy with nothing retrieved
                mix[:] = 1.0 / len(self.departments)
            else:
                mix /= total_w
            order = np.argsort(-mix, kind="stable")[:3]
            top = [DepartmentScore(department=self.departments[i], score=round(float(mix[i]), 4)) for i in order]
            results.append(RoutingResult(top=top, department=top[0].department, confidence=top[0].score))
        return results

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        joblib.dump(self, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Router:
        router = joblib.load(path)
        if not isinstance(router, Router):
            raise TypeError(f"{path} does not hold a Router")
        return router
