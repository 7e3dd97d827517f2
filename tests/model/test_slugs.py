"""Flow names to slug directories: ``slugify``, ``unique_slugs``, ``attempt_dir_name``,
``flow_dir``. See DESIGN.md, "Slug directories"."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_runset.model.slugs import (
    MAX_SLUG_LENGTH,
    RESERVED_SLUGS,
    UnsafePathError,
    attempt_dir_name,
    flow_dir,
    slugify,
    unique_slugs,
)

if TYPE_CHECKING:
    from pathlib import Path

SLUG = re.compile(r"^[a-z0-9._-]+$")
RETRY_SUFFIX = re.compile(r"-retry\d+$")


def short_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def assert_well_formed(slug: str) -> None:
    assert SLUG.match(slug), slug
    assert len(slug) <= MAX_SLUG_LENGTH, slug
    assert slug not in (".", "..")
    assert not slug.startswith(("-", ".")), slug
    assert not slug.endswith(("-", ".")), slug


# --- slugify ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("login", "login"),
        ("Login Flow", "login-flow"),
        ("UPPER", "upper"),
        ("  Hello,  World!! ", "hello-world"),
        ("a/b\\c", "a-b-c"),
        ("../../etc/passwd", "etc-passwd"),
        ("tab\tnew\nline\x00nul", "tab-new-line-nul"),
        ("résumé", "r-sum"),
        ("v1.2_final", "v1.2_final"),
        ("a..b", "a..b"),
        (".hidden", "hidden"),
        ("-dash-", "dash"),
        ("trailing.", "trailing"),
        ("--..x..--", "x"),
        ("checkout (EU) #3", "checkout-eu-3"),
        ("日本語 test", "test"),
    ],
)
def test_slugify_examples(name: str, slug: str) -> None:
    assert slugify(name) == slug


@pytest.mark.parametrize("name", ["", ".", "..", "...", "/", "!!!", "   ", "日本語", "\x00\n"])
def test_slugify_never_empty_or_dots(name: str) -> None:
    slug = slugify(name)
    assert slug == "flow-" + short_hash(name)
    assert_well_formed(slug)


def test_slugify_empty_results_still_differ() -> None:
    assert slugify("!!!") != slugify("???")
    assert slugify("日本") != slugify("中文")


def test_slugify_is_case_insensitive() -> None:
    assert slugify("A") == slugify("a") == "a"
    assert slugify("Smoke Test") == slugify("SMOKE TEST") == slugify("smoke test")


def test_slugify_keeps_names_of_exactly_64_characters() -> None:
    name = "a" * MAX_SLUG_LENGTH
    assert slugify(name) == name


def test_slugify_long_name_keeps_short_hash_of_full_name() -> None:
    name = "x" * 300
    slug = slugify(name)
    assert len(slug) == MAX_SLUG_LENGTH
    assert slug == "x" * 55 + "-" + short_hash(name)


def test_slugify_sixty_five_characters_get_hash() -> None:
    name = "b" * (MAX_SLUG_LENGTH + 1)
    slug = slugify(name)
    assert len(slug) == MAX_SLUG_LENGTH
    assert slug.endswith("-" + short_hash(name))


def test_slugify_long_name_cut_at_separator_leaves_no_double_dash() -> None:
    name = "a" * 54 + "-" + "b" * 20
    slug = slugify(name)
    assert "--" not in slug
    assert slug == "a" * 54 + "-" + short_hash(name)
    assert_well_formed(slug)


def test_long_names_sharing_a_64_character_prefix_differ() -> None:
    prefix = "shared-prefix-" * 5
    assert len(prefix) >= 64
    first, second = slugify(prefix + "one"), slugify(prefix + "two")
    assert first != second
    assert first[:40] == second[:40]
    assert unique_slugs([prefix + "one", prefix + "two"]) == [first, second]


def test_very_long_name() -> None:
    name = "Z" * 10_000
    slug = slugify(name)
    assert_well_formed(slug)
    assert slug == "z" * 55 + "-" + short_hash(name)


# --- unique_slugs ----------------------------------------------------------------------------


def test_duplicates_get_numbered_with_a_loop() -> None:
    assert unique_slugs(["login", "login", "login-2"]) == ["login", "login-2", "login-2-2"]


def test_duplicates_counting_up() -> None:
    assert unique_slugs(["a"] * 4) == ["a", "a-2", "a-3", "a-4"]


def test_uniqueness_is_case_insensitive() -> None:
    assert unique_slugs(["Login", "login", "LOGIN"]) == ["login", "login-2", "login-3"]


def test_names_that_slug_alike_are_separated() -> None:
    assert unique_slugs(["a b", "a/b", "a-b", "A  B"]) == ["a-b", "a-b-2", "a-b-3", "a-b-4"]


@pytest.mark.parametrize("reserved", sorted(RESERVED_SLUGS))
def test_reserved_names_are_never_taken(reserved: str) -> None:
    (slug,) = unique_slugs([reserved])
    assert slug == reserved + "-2"


def test_reserved_name_case_variant() -> None:
    assert unique_slugs(["LATEST", "Report.JSON"]) == ["latest-2", "report.json-2"]


@pytest.mark.parametrize("name", ["x-retry1", "x-retry12", "X-Retry3", "x retry4"])
def test_slugs_never_look_like_retry_directories(name: str) -> None:
    (slug,) = unique_slugs([name])
    assert not RETRY_SUFFIX.search(slug)
    assert slug == slugify(name) + "-2"


def test_retry_look_alike_cannot_collide_with_a_retry_dir() -> None:
    slugs = unique_slugs(["x", "x-retry1"])
    assert slugs == ["x", "x-retry1-2"]
    assert attempt_dir_name(slugs[0], 2) not in slugs


def test_long_duplicates_stay_within_limit_and_unique() -> None:
    slugs = unique_slugs(["n" * 100] * 12)
    assert len(set(slugs)) == 12
    for slug in slugs:
        assert_well_formed(slug)


def test_unique_slugs_accepts_any_iterable_and_empty() -> None:
    assert unique_slugs([]) == []
    assert unique_slugs(name for name in ("b", "a", "b")) == ["b", "a", "b-2"]


def test_unique_slugs_keeps_order_and_first_come_first_served() -> None:
    assert unique_slugs(["login-2", "login", "login"]) == ["login-2", "login", "login-3"]


# --- attempt_dir_name ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, "login"), (1, "login"), (2, "login-retry1"), (3, "login-retry2"), (11, "login-retry10")],
)
def test_attempt_dir_name(attempt: int, expected: str) -> None:
    assert attempt_dir_name("login", attempt) == expected


# --- flow_dir --------------------------------------------------------------------------------


def test_flow_dir_is_directly_inside_run_dir(tmp_path: Path) -> None:
    path = flow_dir(tmp_path, "login")
    assert path == tmp_path / "login"
    assert path.parent == tmp_path
    assert not path.exists()  # only computes the path


def test_flow_dir_accepts_retry_names(tmp_path: Path) -> None:
    assert flow_dir(tmp_path, "login-retry1") == tmp_path / "login-retry1"


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "/etc", "x/..", "../../tmp/evil", "a\x00b"]
)
def test_flow_dir_rejects_unsafe_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePathError, match="unsafe flow directory name"):
        flow_dir(tmp_path, name)


def test_unsafe_path_error_is_a_value_error() -> None:
    assert issubclass(UnsafePathError, ValueError)


def test_flow_dir_rejects_symlink_leading_outside(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    outside = tmp_path / "outside"
    run_dir.mkdir()
    outside.mkdir()
    (run_dir / "login").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="resolves outside"):
        flow_dir(run_dir, "login")


def test_flow_dir_accepts_run_dir_reached_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert flow_dir(link, "login") == link / "login"


# --- properties ------------------------------------------------------------------------------

TRICKY = st.sampled_from(
    [
        "",
        ".",
        "..",
        "...",
        "/",
        "\\",
        "../x",
        "a/b",
        "A",
        "a",
        "login",
        "Login",
        "login-2",
        "latest",
        "report.json",
        "journal.jsonl",
        "x-retry1",
        "-retry1",
        "!!!",
        "\x00",
        "\n\r\t",
        "- . -",
    ]
)
SEPARATORS = st.text(alphabet=st.sampled_from(list("/\\.-_ \x00\n\t:*?Aa1")), max_size=20)
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=80)
LONG = st.tuples(st.text(min_size=1, max_size=4), st.sampled_from([65, 300, 10_000])).map(
    lambda pair: (pair[0] * pair[1])[: pair[1]]
)
NAME = st.one_of(TRICKY, SEPARATORS, ANY_TEXT, LONG)
NAMES = st.lists(NAME, max_size=25)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("run")


@settings(max_examples=300, deadline=None)
@given(names=NAMES)
def test_property_slugs_are_safe_unique_and_inside_run_dir(names: list[str], run_dir: Path) -> None:
    slugs = unique_slugs(names)
    assert len(slugs) == len(names)
    assert len({slug.lower() for slug in slugs}) == len(slugs)
    for slug in slugs:
        assert_well_formed(slug)
        assert not RETRY_SUFFIX.search(slug)
        assert slug not in RESERVED_SLUGS
        for attempt in (1, 2, 3):
            path = flow_dir(run_dir, attempt_dir_name(slug, attempt))
            assert path.resolve().parent == run_dir.resolve()
    # retry directories of one flow never coincide with another flow's directory
    retry_dirs = {attempt_dir_name(slug, n) for slug in slugs for n in (2, 3, 10)}
    assert not retry_dirs & set(slugs)


@settings(max_examples=200, deadline=None)
@given(names=NAMES)
def test_property_deterministic(names: list[str]) -> None:
    assert unique_slugs(names) == unique_slugs(list(names))
    assert [slugify(name) for name in names] == [slugify(name) for name in list(names)]


@settings(max_examples=200, deadline=None)
@given(name=NAME)
def test_property_slugify_well_formed(name: str) -> None:
    assert_well_formed(slugify(name))


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(alphabet="abcdefghij0123456789-_.", min_size=64, max_size=120),
    tails=st.lists(st.text(min_size=1, max_size=10), min_size=2, max_size=5, unique=True),
)
def test_property_long_names_sharing_prefix_get_unique_slugs(prefix: str, tails: list[str]) -> None:
    slugs = unique_slugs(prefix + tail for tail in tails)
    assert len(set(slugs)) == len(tails)
    for slug in slugs:
        assert_well_formed(slug)


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(alphabet="abcdefghij0123456789_", min_size=64, max_size=120),
    tails=st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10),
        min_size=2,
        max_size=5,
        unique=True,
    ),
)
def test_property_slugify_long_names_sharing_prefix_differ(prefix: str, tails: list[str]) -> None:
    # No de-duplication involved: the hash of the full name tells them apart.
    slugs = [slugify(prefix + tail) for tail in tails]
    assert len(set(slugs)) == len(tails)
    assert all(len(slug) == MAX_SLUG_LENGTH for slug in slugs)


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=30), copies=st.integers(min_value=1, max_value=6))
def test_property_case_variants_and_duplicates(name: str, copies: int) -> None:
    names = [name, name.upper(), name.lower(), name.swapcase()] * copies
    slugs = unique_slugs(names)
    assert len(set(slugs)) == len(names)
