"""Random project files and templates: a Project or a ProjectError, never anything else."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from replica.project import ProjectError, parse_project, render, template_fields

KEYS = st.sampled_from([
    "backend", "dependencies", "probe", "app", "command", "path", "health", "env", "server", "workers",
    "failpoints", "image", "build", "kind", "token", "welcome", "ping", "send", "expect", "claims",
    "startup_timeout", "postgres", "redis", "auth", "DATABASE_URL", "x",
])
SCALARS = st.one_of(
    st.sampled_from(["a:b", "chat.main:app", "/health", ".", "{postgres.url}", "{port}", "{fd}", "{", "}}", "mint",
                     "env:TOKEN", "http", "redis", "uvicorn", "gunicorn", "ws.publish", "nowhere"]),
    st.text(max_size=12), st.integers(-3, 40), st.floats(allow_nan=True), st.booleans(),
)
TOML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(KEYS, TOML_VALUES, max_size=4))
def test_any_project_data_loads_or_is_refused_with_a_project_error(data) -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "chat"
    try:
        project = parse_project(data, root / "replica.toml")
    except ProjectError as exc:
        assert str(exc).startswith(f"{root / 'replica.toml'}: ")
        return
    assert project.backend.app is not None or project.backend.command is not None


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=40))
def test_escaped_text_renders_back_to_itself_and_any_template_parses_or_says_why(text: str) -> None:
    assert render(text.replace("{", "{{").replace("}", "}}"), {}) == text
    try:
        fields = template_fields(text)
    except ValueError as exc:
        assert "a lone" in str(exc)
        return
    values = {name: f"<{name}>" for name in fields}
    rendered = render(text, values)
    assert all(f"<{name}>" in rendered for name in fields)
