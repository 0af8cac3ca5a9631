"""The normalize stage's parameters (one switch per rule), shared by the stage and its rules."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from stages.base import StageParams

DEFAULT_TRADITIONAL_KEYWORDS = (
    "繁体", "繁體", "正体", "正體", "繁中", "traditional chinese", "zh-tw", "zh_tw", "zh-hant", "zh-hk",
)  # fmt: skip
DEFAULT_PLACEHOLDERS = (
    "<noinput>", "<no input>", "noinput", "no input", "<无输入>", "无输入", "（无输入）", "(无输入)",
    "<无>", "无", "没有输入", "无需输入", "n/a", "<n/a>", "<none>", "<empty>", "<空>",
)  # fmt: skip


class NormalizeParams(StageParams):
    """Each rule can be switched off; the defaults are what the default recipe runs."""

    html_entities: bool = Field(default=True, description="decode complete HTML entities (&lt; &amp; &#39; &nbsp;)")
    invisible: bool = Field(default=True, description="remove zero-width, soft hyphen and control characters")
    fullwidth: bool = Field(default=True, description="full-width ASCII to half-width; ，！？；：（） stay")
    cjk_punct: bool = Field(default=True, description=", ? ! : ; . right after Chinese to ，？！：；。")
    whitespace: bool = Field(default=True, description="Unicode spaces, space runs, 3+ newlines, strip each field")
    cjk_spaces: bool = Field(default=True, description="remove spaces between Chinese characters/punctuation")
    t2s: Literal["t2s", "tw2sp", "hk2s", "off"] = Field(
        default="t2s", description="OpenCC config for Traditional to Simplified (true = t2s, false = off)"
    )
    keep_traditional_keywords: tuple[str, ...] = Field(
        default=DEFAULT_TRADITIONAL_KEYWORDS, description="a request naming one of these (any case) keeps Traditional"
    )
    placeholders: tuple[str, ...] = Field(
        default=DEFAULT_PLACEHOLDERS, description="whole `input` values (any case, trailing 。. ignored) that mean none"
    )

    @field_validator("t2s", mode="before")
    @classmethod
    def _t2s_bool(cls, v: Any) -> Any:
        """``t2s: true`` means the default OpenCC config, ``false`` means off."""
        if v is True:
            return "t2s"
        if v is False:
            return "off"
        return v
