"""One typed settings object, read from TRIAGE_* environment variables and an optional .env file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; docs/configuration.md's table is written from this class."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path(".triage"), description="Workspace: knowledge base, models, Chroma data.")

    # Case database
    database_url: str | None = Field(
        None, description="SQLAlchemy URL (e.g. postgresql+psycopg://...); unset = SQLite file in data_dir."
    )

    # Vector store
    chroma_url: str | None = Field(None, description="Chroma server URL; unset = embedded Chroma in data_dir.")
    chroma_api_key: SecretStr | None = Field(None, description="Sent as x-chroma-token to a Chroma server.")

    # Embeddings
    embeddings: Literal["offline", "openai"] = Field("offline", description="Embedder for retrieval.")
    embedding_model: str = Field("text-embedding-3-small", description="Model for embeddings=openai.")
    embedding_base_url: str | None = Field(None, description="OpenAI-compatible embeddings endpoint.")
    embedding_api_key: SecretStr | None = Field(None, description="Key for the embeddings endpoint.")
    offline_embedding_dim: int = Field(256, ge=16, le=2048, description="Dimensions of the offline embedder.")

    # LLM drafter
    llm_model: str | None = Field(None, description="Chat model name; unset = offline drafter only.")
    llm_base_url: str | None = Field(None, description="OpenAI-compatible base URL (OpenAI, DeepSeek, vLLM...).")
    llm_api_key: SecretStr | None = Field(None, description="Key for the LLM endpoint.")
    llm_timeout_s: float = Field(30.0, gt=0, description="Per-request timeout in seconds.")
    llm_max_retries: int = Field(2, ge=0, le=10, description="Client retries on 429/5xx/timeouts.")
    llm_temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature.")
    llm_structured_method: Literal["json_mode", "json_schema", "function_calling"] = Field(
        "json_mode", description="How structured output is requested from the LLM."
    )

    # Token budget
    tiktoken_encoding: str = Field("o200k_base", description="tiktoken encoding for counting tokens.")
    max_complaint_tokens: int = Field(1500, ge=50, description="Complaint text beyond this is truncated.")

    # Retrieval and matching
    top_k_problems: int = Field(5, ge=1, le=50, description="Typical problems retrieved per complaint.")
    top_k_cases: int = Field(8, ge=0, le=100, description="Past cases retrieved per complaint.")
    problem_match_threshold: float = Field(
        0.35,
        ge=0,
        le=1,
        description="Match score (mean of embedding and lexical cosine) below which no typical problem is matched.",
    )
    reply_days: int = Field(5, ge=1, le=60, description="Working days promised in offline reply drafts.")

    # Batch re-triage jobs
    job_lease_s: float = Field(
        60.0, gt=0, description="Seconds a worker holds claimed items; a dead worker's items are reclaimed after this."
    )
    job_rpm: int | None = Field(
        None, ge=1, description="Default LLM requests per minute for a re-triage worker (API jobs use it)."
    )
    job_tpm: int | None = Field(None, ge=1, description="Default LLM tokens per minute for a re-triage worker.")
    llm_price_input_per_1k: float = Field(0.0, ge=0, description="Price per 1,000 prompt tokens, for cost estimates.")
    llm_price_output_per_1k: float = Field(
        0.0, ge=0, description="Price per 1,000 completion tokens, for cost estimates."
    )

    # Review API
    api_host: str = Field("127.0.0.1", description="Address `triage serve` listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port `triage serve` listens on.")
    api_max_body_bytes: int = Field(1_048_576, ge=1024, description="Larger request bodies get 413.")
    api_max_batch: int = Field(1000, ge=1, description="Most complaints in one batch ingest request.")
    api_auth_cache_s: float = Field(
        5.0, ge=0, le=300, description="Seconds an API key check is cached; a revocation elsewhere takes this long."
    )
    api_draft_workers: int = Field(
        1, ge=1, le=16, description="Background threads drafting batch-ingested cases in the API process."
    )
    api_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="API processes `triage serve` starts; more than one needs PostgreSQL and a Chroma server.",
    )

    # Time, deadlines and supervision
    timezone: str = Field(
        "Asia/Shanghai",
        description="IANA time zone of the deployment: times without an offset are read in it, and days, ISO weeks "
        "and working days are counted in it.",
    )
    calendar_file: Path | None = Field(
        None, description="YAML of extra holidays and in-lieu working days (years chinesecalendar does not know yet)."
    )
    deadline_rules_file: Path | None = Field(
        None, description="YAML of deadline rules per channel; unset = the built-in rules (docs/deadlines.md)."
    )
    no_return_channels: list[str] = Field(
        default_factory=lambda: ["好差评"],
        description="Channels whose cases a department may not return (退单); only supervisors reassign them.",
    )
    notice_after_working_days: int = Field(
        3, ge=1, le=60, description="Working days after a reminder (催办) before an overdue case is noticed (通报)."
    )
    figures_cache_s: float = Field(
        10.0,
        ge=0,
        le=600,
        description="Seconds the case counts behind GET /supervision and GET /problems are reused; 0 = always counted.",
    )
    escalation_every_s: float = Field(
        300.0, ge=0, description="Seconds between the API process's escalation sweeps; 0 = no sweep in the API."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}'; use an IANA name such as Asia/Shanghai") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("chroma_url", "llm_base_url", "embedding_base_url", "llm_model", "database_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @property
    def llm_enabled(self) -> bool:
        return self.llm_model is not None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, created once on first use (never at import)."""
    return Settings()
