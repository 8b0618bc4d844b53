"""Department scores from what the workspace knows: the knowledge base, its history, the neighbours.

Four signals, each a probability over departments:
- `svm`: a linear SVM on character n-gram TF-IDF (precise on vocabulary seen in history);
- `nbsvm`: the same SVM on features scaled by naive-Bayes log-count ratios (Wang & Manning 2012),
  stronger with thousands of labelled cases, weaker with a few hundred;
- `lsa`: logistic regression on the LSA vectors (generalises from few examples: LSA is fitted on
  all the workspace's text, labelled or not);
- `knn`: a similarity-weighted vote of the retrieved past cases and typical problems.
Both classifiers train on the knowledge base (department scopes and aliases, typical problems) plus
every history case, so a workspace routes with no history at all and improves as history grows.

How much each signal counts is learned from the workspace's own history: out-of-fold predictions
(3-fold cross-validation over the history, the knowledge base always in training) choose the
mixing weights that maximise macro-F1. With too little history the defaults below apply.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.svm import LinearSVC

from triage.knowledge import KnowledgeBase
from triage.models import DepartmentScore
from vectorstore import Hit, TextModel
from vectorstore.embedders import SparseMatrix

Array = NDArray[np.float64]
SIGNALS = ("svm", "nbsvm", "lsa", "knn")
DEFAULT_WEIGHTS = {"svm": 0.5, "nbsvm": 0.0, "lsa": 0.5, "knn": 0.0}
SVM_TEMPERATURE = 0.25
MIN_HISTORY_FOR_WEIGHTS = 50
# Learned weights are shrunk towards the defaults by n / (n + WEIGHT_PRIOR_CASES): cross-validation
# on a few hundred cases is noisy (measured: weights fitted on 160 cases routed worse than the
# defaults), on thousands it is trustworthy.
WEIGHT_PRIOR_CASES = 500
FOLDS = 3
KNN_K = 8


def kb_training_docs(kb: KnowledgeBase) -> list[tuple[str, str]]:
    """(text, department) pairs that describe each department in the knowledge base's own words."""
    docs = []
    for d in kb.departments:
        names = "、".join([d.name, *([d.full_name] if d.full_name else []), *d.aliases])
        docs.append((f"{names}。{d.scope}", d.name))
    for p in kb.problems:
        docs.append((p.search_text(), p.department))
    return docs


def _linear(x: SparseMatrix | NDArray[np.float32], model: LinearSVC | NBLinear | LogisticRegression) -> Array:
    """decision_function of a fitted linear model, as an (n, classes) array."""
    scores = np.asarray(x @ model.coef_.T) + model.intercept_
    if scores.shape[1] == 1:  # binary models keep one column: score of classes_[1]
        scores = np.hstack([-scores, scores])
    return np.asarray(scores, dtype=np.float64)


def _softmax(scores: Array, temperature: float) -> Array:
    e = np.exp((scores - scores.max(axis=1, keepdims=True)) / temperature)
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


class NBLinear:
    """One-vs-rest linear SVMs on naive-Bayes-scaled features, folded into one linear model.

    Scoring x ⊙ r_c with weights w_c equals scoring x with r_c ⊙ w_c, so the result exposes
    `coef_`, `intercept_` and `classes_` like any sklearn linear model.
    """

    def __init__(self, c: float = 0.5) -> None:
        self.c = c

    def fit(self, x: SparseMatrix, labels: NDArray[np.str_]) -> NBLinear:
        from scipy.sparse import diags

        present = (x > 0).astype(np.float32)
        self.classes_: list[str] = [str(c) for c in np.unique(labels)]
        coefs, intercepts = [], []
        for cls in self.classes_:
            inside = labels == cls
            p = np.asarray(present[inside].sum(axis=0)).ravel() + 1.0
            q = np.asarray(present[~inside].sum(axis=0)).ravel() + 1.0
            ratio = np.log((p / p.sum()) / (q / q.sum())).astype(np.float32)
            # NB-scaled features are unnormalised, so liblinear needs more than its default 1,000 rounds.
            model = LinearSVC(C=self.c, class_weight="balanced", max_iter=5000, random_state=0)
            model.fit(x @ diags(ratio), inside.astype(int))
            coefs.append(model.coef_[0] * ratio)
            intercepts.append(model.intercept_[0])
        self.coef_ = np.vstack(coefs)
        self.intercept_ = np.asarray(intercepts)
        return self


Models = tuple[LinearSVC, NBLinear, LogisticRegression]


def _fit(x: SparseMatrix, z: NDArray[np.float32], labels: NDArray[np.str_]) -> Models:
    svm = LinearSVC(C=0.5, class_weight="balanced", random_state=0).fit(x, labels)
    nbsvm = NBLinear(c=0.5).fit(x, labels)
    # C=1 (sklearn's default): on real messages with 300 labelled items it routed 1.5 points better
    # than C=10, and no worse with 3,000.
    lsa = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced").fit(z, labels)
    return svm, nbsvm, lsa


def _knn_votes(sims: Array, ref_labels: NDArray[np.int64], n_classes: int, k: int = KNN_K) -> Array:
    """Similarity²-weighted votes of the k most similar references, normalised per row."""
    votes = np.zeros((sims.shape[0], n_classes))
    k = min(k, sims.shape[1])
    if k == 0:
        return votes
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    for row, cols in enumerate(top):
        np.add.at(votes[row], ref_labels[cols], np.clip(sims[row, cols], 0, 1) ** 2)
    totals = votes.sum(axis=1, keepdims=True)
    totals[totals == 0] = 1.0
    out: Array = votes / totals
    return out


def _weight_grid(step: float = 0.1) -> list[dict[str, float]]:
    """Every mix of the signals in steps of `step` that sums to 1."""
    n = round(1 / step)
    grid = []
    for parts in itertools.product(range(n + 1), repeat=len(SIGNALS) - 1):
        if sum(parts) <= n:
            grid.append({s: k * step for s, k in zip(SIGNALS, (*parts, n - sum(parts)), strict=True)})
    return grid


@dataclass
class RoutingResult:
    top: list[DepartmentScore]
    department: str
    confidence: float
    chosen: bool = False  # a person chose the department (a reassignment): drafting must keep it

    def choose(self, department: str) -> RoutingResult:
        """The same scores, with the department a person chose first and kept."""
        score = next((s.score for s in self.top if s.department == department), 0.0)
        rest = [s for s in self.top if s.department != department]
        top = [DepartmentScore(department=department, score=score), *rest][: max(len(self.top), 1)]
        return RoutingResult(top=top, department=department, confidence=score, chosen=True)


class Router:
    """Scores departments for complaints; trained by `Router.train`, saved with joblib."""

    def __init__(
        self,
        departments: Sequence[str],
        models: Models | None,
        *,
        fingerprint: str,
        n_history: int,
        weights: dict[str, float] | None = None,
        cv_macro_f1: float | None = None,
    ) -> None:
        self.departments = list(departments)
        self._index = {d: i for i, d in enumerate(self.departments)}
        self.models = models
        self.fingerprint = fingerprint
        self.n_history = n_history
        self.weights = weights or dict(DEFAULT_WEIGHTS)
        self.cv_macro_f1 = cv_macro_f1

    @classmethod
    def train(cls, *, kb: KnowledgeBase, model: TextModel, history: Sequence[tuple[str, str]]) -> Router:
        kb_docs = kb_training_docs(kb)
        hist = [(t, d) for t, d in history if d in kb.by_name]
        texts = [t for t, _ in kb_docs] + [t for t, _ in hist]
        labels = np.array([d for _, d in kb_docs] + [d for _, d in hist])
        x = model.sparse(texts)
        z = model.dense_from_sparse(x)
        models = _fit(x, z, labels) if len(set(labels)) >= 2 else None
        router = cls(kb.department_names, models, fingerprint="", n_history=len(hist))
        if models is not None and len(hist) >= MIN_HISTORY_FOR_WEIGHTS:
            router.weights, router.cv_macro_f1 = router._learn_weights(x, z, labels, n_kb=len(kb_docs))
        digest = hashlib.sha256(model.fingerprint.encode())
        digest.update("\n".join(kb.department_names).encode())
        digest.update(str(len(texts)).encode())
        digest.update(repr(sorted(router.weights.items())).encode())
        router.fingerprint = f"router:{digest.hexdigest()[:12]}"
        return router

    def _learn_weights(
        self, x: SparseMatrix, z: NDArray[np.float32], labels: NDArray[np.str_], *, n_kb: int
    ) -> tuple[dict[str, float], float]:
        """Mixing weights that maximise out-of-fold macro-F1 on the history (KB docs always train)."""
        n = len(labels)
        hist_idx = np.arange(n_kb, n)
        folds = np.random.default_rng(0).permutation(len(hist_idx)) % FOLDS
        y = np.array([self._index[str(label)] for label in labels])
        oof = {s: np.zeros((len(hist_idx), len(self.departments))) for s in SIGNALS}

        def fold(f: int) -> tuple[NDArray[np.int64], dict[str, Array]] | None:
            held = hist_idx[folds == f]
            train = np.concatenate([np.arange(n_kb), hist_idx[folds != f]])
            if len(set(labels[train])) < 2 or len(held) == 0:
                return None
            probs = self._classifier_probs(_fit(x[train], z[train], labels[train]), x[held], z[held])
            ref = hist_idx[folds != f]
            probs["knn"] = _knn_votes(z[held] @ z[ref].T, y[ref], len(self.departments))
            return np.flatnonzero(folds == f), probs

        # liblinear releases the GIL, so folds train in parallel threads.
        with ThreadPoolExecutor(max_workers=min(FOLDS, os.cpu_count() or 1)) as pool:
            for result in pool.map(fold, range(FOLDS)):
                if result is not None:
                    pos, probs = result
                    for name, values in probs.items():
                        oof[name][pos] = values
        gold = y[hist_idx]
        best: tuple[float, float, dict[str, float]] | None = None
        for w in _weight_grid():
            mix = sum(w[s] * oof[s] for s in SIGNALS)
            pred = np.argmax(mix, axis=1)
            score = float(f1_score(gold, pred, average="macro"))
            # Ties go to the grid point nearer the defaults: no weight moves without evidence.
            distance = sum(abs(w[s] - DEFAULT_WEIGHTS[s]) for s in SIGNALS)
            if best is None or (score, -distance) > (best[0], -best[1]):
                best = (score, distance, w)
        assert best is not None
        trust = len(hist_idx) / (len(hist_idx) + WEIGHT_PRIOR_CASES)
        weights = {s: round(trust * best[2][s] + (1 - trust) * DEFAULT_WEIGHTS[s], 3) for s in SIGNALS}
        return weights, round(best[0], 4)

    def _classifier_probs(self, models: Models, x: SparseMatrix, z: NDArray[np.float32]) -> dict[str, Array]:
        """Per-department probabilities of each classifier, from the linear models' own decision
        functions (sklearn's per-call input checks cost more than the arithmetic for one complaint)."""
        svm, nbsvm, lsa = models
        return {
            "svm": self._spread(svm.classes_, _softmax(_linear(x, svm), SVM_TEMPERATURE)),
            "nbsvm": self._spread(nbsvm.classes_, _softmax(_linear(x, nbsvm), SVM_TEMPERATURE)),
            "lsa": self._spread(lsa.classes_, _softmax(_linear(z, lsa), 1.0)),
        }

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
        parts = self._classifier_probs(self.models, x, z) if self.models is not None else {}
        results = []
        for row in range(n):
            mix = np.zeros(len(self.departments))
            total_w = 0.0
            for name, part in parts.items():
                if self.weights.get(name, 0) > 0:
                    mix += self.weights[name] * part[row]
                    total_w += self.weights[name]
            knn = self._knn(case_hits[row], problem_hits[row])
            # Without trained classifiers (a one-department taxonomy) the neighbours are all there is.
            knn_weight = self.weights["knn"] if total_w > 0 else 1.0
            if knn is not None and knn_weight > 0:
                mix += knn_weight * knn
                total_w += knn_weight
            if total_w == 0:
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
