"""triage(complaint) -> Draft: validate, redact, retrieve, route, draft, check.

A valid complaint always gets a complete draft: LLM failures fall back to the offline drafter, and
an unavailable retrieval backend degrades routing to the classifiers alone; both are recorded on
the draft (`fallback_reason`, `warnings`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

from triage.drafting import (
    DraftContext,
    Drafter,
    DraftResult,
    LLMDrafter,
    OfflineDrafter,
    ScoredCase,
    ScoredProblem,
)
from triage.errors import DraftingError, EmbedderMismatchError, EmbeddingError, VectorStoreError
from triage.knowledge import KnowledgeBase
from triage.models import Complaint, Draft, Evidence, ProblemMatch
from triage.redaction import INSTRUCTION_PLACEHOLDER, mask_pii, redact
from triage.routing import RoutingResult
from triage.settings import Settings
from triage.snapshot import Models
from triage.tokens import TokenCounter
from triage.workspace import Workspace, case_from_hit_meta
from vectorstore import Hit
from vectorstore.embedders import SparseMatrix
from vectorstore.store import CASES, PROBLEMS

log = logging.getLogger(__name__)
_SENTENCE_END = re.compile(r"[。！？!?\n；;]")
ISSUE_CHARS = 40
# Policy document numbers such as 沪府办发〔2023〕12号: a draft must not invent them.
_DOCUMENT_NUMBER = re.compile(
    r"[〔\[［(（]\s*(?:19|20)\d{2}\s*[〕\]］)）]\s*第?\s*\d+\s*号|[发函字令]\s*第?\s*\d+\s*号"
)


@dataclass(frozen=True)
class Exclusions:
    """Items never retrieved as evidence (an evaluation's own test items)."""

    ids: frozenset[str] = frozenset()
    text_hashes: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.ids or self.text_hashes)

    def keep(self, hit: Hit) -> bool:
        return hit.id not in self.ids and hit.metadata.get("text_hash") not in self.text_hashes


@dataclass
class _Prepared:
    complaint: Complaint
    text: str  # redacted, instruction-free, budgeted
    issue: str
    complaint_tokens: int
    truncated: bool
    warnings: list[str] = field(default_factory=list)


def restate(complaint: Complaint, redacted_text: str) -> str:
    """A short restatement of the issue for replies: the title, else the first real sentence."""
    if complaint.title:
        source = mask_pii(complaint.title)[0]
    else:
        sentences = [s.strip() for s in _SENTENCE_END.split(redacted_text)]
        source = next((s for s in sentences if len(s) >= 4 and INSTRUCTION_PLACEHOLDER not in s), redacted_text)
    source = source.strip("“”\"' ，,。")
    return source if len(source) <= ISSUE_CHARS else source[:ISSUE_CHARS] + "……"


class TriagePipeline:
    """Built from a workspace; `llm` is the configured LLM drafter or None (offline only)."""

    def __init__(self, workspace: Workspace, *, llm: Drafter | None = None, tokens: TokenCounter | None = None):
        self.ws = workspace
        self.settings = workspace.settings
        self.tokens = tokens or TokenCounter(self.settings.tiktoken_encoding)
        self.llm = llm
        self.offline = OfflineDrafter()
        self._query_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triage-retrieval")

    @classmethod
    def from_settings(cls, settings: Settings, workspace: Workspace) -> TriagePipeline:
        tokens = TokenCounter(settings.tiktoken_encoding)
        llm: Drafter | None = None
        if settings.llm_enabled:
            assert settings.llm_model is not None
            llm = LLMDrafter(
                model=settings.llm_model,
                base_url=settings.llm_base_url,
                api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
                timeout_s=settings.llm_timeout_s,
                max_retries=settings.llm_max_retries,
                temperature=settings.llm_temperature,
                method=settings.llm_structured_method,
                tokens=tokens,
            )
        return cls(workspace, llm=llm, tokens=tokens)

    # -- steps -----------------------------------------------------------------------------
    def _prepare(self, complaint: Complaint) -> _Prepared:
        r = redact(complaint.text)
        complaint_tokens = self.tokens.count(r.text)
        budget = self.settings.max_complaint_tokens
        text, truncated = (r.text, False) if complaint_tokens <= budget else self.tokens.truncate(r.text, budget)
        warnings = []
        if r.instructions_removed:
            warnings.append(f"removed {r.instructions_removed} instruction-like sentence(s) from the complaint text")
        if truncated:
            warnings.append(f"complaint text truncated to {self.settings.max_complaint_tokens} tokens")
        return _Prepared(
            complaint=complaint,
            text=text,
            issue=restate(complaint, r.text),
            complaint_tokens=complaint_tokens,
            truncated=truncated,
            warnings=warnings,
        )

    def _retrieve(
        self, m: Models, texts: list[str], x: SparseMatrix, exclude: Exclusions
    ) -> tuple[list[list[Hit]], list[list[Hit]], str | None]:
        s = self.settings
        extra = 10 if exclude else 0
        try:
            vectors = m.embed_queries(texts, x)
            # The two collections are queried at once: Chroma's engine releases the GIL, and the two
            # queries are half of a single complaint's latency.
            pending = self._query_pool.submit(m.search_vectors, vectors, collection=PROBLEMS, k=s.top_k_problems)
            cases = m.search_vectors(vectors, collection=CASES, k=s.top_k_cases + extra) if s.top_k_cases else None
            problems = pending.result()
        except EmbedderMismatchError:
            raise
        except (VectorStoreError, EmbeddingError) as exc:
            log.warning("retrieval unavailable, routing without neighbours: %s", exc)
            empty: list[list[Hit]] = [[] for _ in texts]
            return empty, [[] for _ in texts], f"retrieval unavailable: {exc}"
        if cases is None:
            cases = [[] for _ in texts]
        cases = [[h for h in hits if exclude.keep(h)][: s.top_k_cases] for hits in cases]
        return problems, cases, None

    @staticmethod
    def _match_scores(m: Models, x_row: SparseMatrix, hits: Sequence[Hit]) -> dict[str, float]:
        """Match score per retrieved problem: mean of embedding similarity and lexical TF-IDF cosine.

        The lexical half keeps the score comparable across embedders and knowledge-base sizes (an
        LSA space fitted on a small corpus makes unrelated texts look similar).
        """
        ids, rows = m.problem_ids, m.problem_rows
        if rows is None or not hits:
            return {}
        lexical = dict(zip(ids, (rows @ x_row.T).toarray().ravel().tolist(), strict=True))
        return {h.id: round(0.5 * (h.similarity + min(1.0, lexical.get(h.id, 0.0))), 4) for h in hits}

    def _match(
        self, m: Models, complaint: Complaint, department: str, scores: dict[str, float]
    ) -> ScoredProblem | None:
        """The best-scoring typical problem of the routed department at or above the threshold."""
        best: tuple[float, ScoredProblem] | None = None
        for pid, score in scores.items():
            problem = m.kb.problems_by_id.get(pid)
            if problem is None or problem.department != department:
                continue
            rank = score + (0.1 if complaint.service_item in problem.service_items else 0.0)
            if score >= self.settings.problem_match_threshold and (best is None or rank > best[0]):
                best = (rank, ScoredProblem(problem, score))
        return best[1] if best else None

    def _draft_one(
        self,
        m: Models,
        prep: _Prepared,
        route: RoutingResult,
        x_row: SparseMatrix,
        problem_hits: list[Hit],
        case_hits: list[Hit],
    ) -> Draft:
        kb = m.kb
        scores = self._match_scores(m, x_row, problem_hits)
        problems = [ScoredProblem(kb.problems_by_id[i], s) for i, s in scores.items() if i in kb.problems_by_id]
        problems.sort(key=lambda p: -p.similarity)
        cases = [ScoredCase(case_from_hit_meta(h.id, h.document, h.metadata), h.similarity) for h in case_hits]
        matched = self._match(m, prep.complaint, route.department, scores)
        ctx = DraftContext(
            complaint=prep.complaint,
            text=prep.text,
            issue=prep.issue,
            top_departments=route.top,
            problems=problems,
            matched_problem=matched,
            cases=cases,
            kb=kb,
            reply_days=self.settings.reply_days,
        )
        warnings = list(prep.warnings)
        fallback = None
        result: DraftResult | None = None
        if self.llm is not None:
            try:
                result = self._checked_llm(self.llm.draft(ctx), ctx, warnings, chosen=route.chosen)
            except DraftingError as exc:
                fallback = exc.reason
            except Exception as exc:  # the invariant: a valid complaint always gets a draft
                log.exception("llm drafter failed unexpectedly")
                fallback = f"llm drafter error: {type(exc).__name__}: {exc}"
        if result is None:
            result = self.offline.draft(ctx)
        reply, found = mask_pii(result.reply)
        if found:
            warnings.append("personal data removed from the reply draft")
        if _DOCUMENT_NUMBER.search(reply):
            warnings.append("the reply cites a document number; verify it against the actual policy before sending")
        root_cause = mask_pii(result.root_cause)[0]
        score = next((s.score for s in route.top if s.department == result.department), route.confidence)
        problem = kb.problems_by_id.get(result.typical_problem_id) if result.typical_problem_id else None
        sim = next((p.similarity for p in problems if problem and p.problem.id == problem.id), 0.0)
        evidence = [
            Evidence(
                kind="typical_problem",
                id=p.problem.id,
                similarity=round(p.similarity, 4),
                department=p.problem.department,
                title=p.problem.title,
            )
            for p in problems
        ] + [
            Evidence(
                kind="past_case",
                id=c.case.id,
                similarity=round(c.similarity, 4),
                department=c.case.department,
                title=c.case.title,
            )
            for c in cases
        ]
        tokens = result.tokens.model_copy(
            update={"complaint": prep.complaint_tokens, "estimated": self.tokens.estimated}
        )
        return Draft(
            department=result.department,
            top_departments=route.top,
            typical_problem=(
                ProblemMatch(
                    id=problem.id,
                    title=problem.title,
                    department=problem.department,
                    similarity=round(sim, 4),
                )
                if problem
                else None
            ),
            possible_new_problem=problem is None,
            no_match_reason=None if problem else self._no_match_reason(kb, problems, result.department),
            root_cause=root_cause,
            reply=reply,
            confidence=round(min(1.0, max(0.0, score)), 4),
            evidence=evidence,
            drafted_by=result.drafted_by,
            prompt_version=result.prompt_version,
            fallback_reason=fallback,
            tokens=tokens,
            truncated=prep.truncated,
            warnings=warnings,
        )

    def _no_match_reason(self, kb: KnowledgeBase, problems: Sequence[ScoredProblem], department: str) -> str:
        own = [p for p in problems if p.problem.department == department]
        if not kb.problems:
            return "no typical problems in the knowledge base"
        if not own:
            return f"no typical problem of {department} among the nearest; possible new problem"
        return (
            f"nearest typical problem of {department} ({own[0].problem.id}) has similarity "
            f"{own[0].similarity:.2f} < {self.settings.problem_match_threshold:.2f}; possible new problem"
        )

    def _checked_llm(
        self, result: DraftResult, ctx: DraftContext, warnings: list[str], *, chosen: bool = False
    ) -> DraftResult:
        """Routing stays grounded: the LLM may choose among the candidates, not outside them."""
        candidates = [s.department for s in ctx.top_departments]
        if chosen:
            candidates = candidates[:1]
        if result.department not in candidates:
            warnings.append(
                f"LLM chose {result.department}, outside the retrieval-grounded candidates; kept {candidates[0]}"
            )
            result.department = candidates[0]
        problem = ctx.kb.problems_by_id.get(result.typical_problem_id or "")
        if problem is not None and problem.department != result.department:
            warnings.append(f"LLM matched {problem.id} of {problem.department}; replaced by retrieval's match")
            m = ctx.matched_problem
            result.typical_problem_id = m.problem.id if m and m.problem.department == result.department else None
        return result

    # -- public ----------------------------------------------------------------------------
    def triage(self, complaint: Complaint) -> Draft:
        return self.triage_many([complaint])[0]

    def triage_many(
        self,
        complaints: Sequence[Complaint],
        *,
        exclude: Exclusions | None = None,
        pool: Executor | None = None,
        departments: Sequence[str | None] | None = None,
    ) -> list[Draft]:
        """Drafts for complaints in order; retrieval and routing are batched. With an LLM drafter and a
        `pool`, the drafts (one LLM call each) run concurrently on it. `departments` (per complaint, or
        None) are departments a person chose: the draft is written for that department."""
        if not complaints:
            return []
        exclude = exclude or Exclusions()
        preps = [self._prepare(c) for c in complaints]
        # The placeholder tells an LLM that something was removed; routing and retrieval must see
        # exactly what they would have seen without the injected sentence.
        texts = [
            (f"{mask_pii(p.complaint.title)[0]}。" if p.complaint.title else "")
            + p.text.replace(INSTRUCTION_PLACEHOLDER, "")
            for p in preps
        ]
        m = self.ws.models  # one snapshot for the whole call, whatever a rebuild swaps in meanwhile
        x = m.text_model.sparse(texts)
        problem_hits, case_hits, degraded = self._retrieve(m, texts, x, exclude)
        routes = m.router.route(x, m.text_model.dense_from_sparse(x), case_hits, problem_hits)
        if departments is not None:
            routes = [r if d is None else r.choose(d) for r, d in zip(routes, departments, strict=True)]
        jobs = []
        for i, (prep, route, ph, ch) in enumerate(zip(preps, routes, problem_hits, case_hits, strict=True)):
            if degraded:
                prep.warnings.append(degraded)
            jobs.append((prep, route, x[i], ph, ch))
        if pool is not None and self.llm is not None:
            return list(pool.map(lambda job: self._draft_one(m, *job), jobs))
        return [self._draft_one(m, *job) for job in jobs]
